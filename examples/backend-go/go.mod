module example.com/uploadbucket-backend

go 1.22
