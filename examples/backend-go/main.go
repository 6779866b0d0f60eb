// Command uploadbucket-backend is an app backend for the uploadbucket signer, in Go's
// standard library only: it forwards the browser's upload calls under /api/uploads to the
// signer sidecar in the same pod, naming the user from the app's own session. The rules are
// those of the marked part of examples/web/server.js; tests/tests/backends.rs runs this
// program against a signer on Ceph RGW.
//
//	go build -o backend . && ./backend    PORT (default 3000), UPLOADBUCKET_SIGNER_URL, TOKEN_AUTH=1
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// maxBody is the largest request body taken from the browser, as express.json() takes
// (100 KiB): the longest call, completing a 10 GiB upload in upload.js's 8 MiB parts, is
// about 80 KB.
const maxBody = 100 << 10

// The signer calls a browser may make, under /api/uploads: method, path, and where the
// session's owner goes. Anything else (the signer's other routes, dot segments, encoded
// slashes: any path outside this table) is refused here and never reaches the signer.
const prefix = "/api/uploads"

type route struct {
	method  string
	path    *regexp.Regexp
	ownerIn string // "body" or "query"
}

var routes = func() []route {
	const id = `[A-Za-z0-9._~-]+`
	table := [][3]string{
		{"POST", `/`, "body"},
		{"POST", `/multipart`, "body"},
		{"POST", `/verify`, "body"},
		{"GET", `/multipart/` + id + `/(?:batch|[0-9]+)`, "query"},
		{"GET", `/multipart/` + id, "query"},
		{"POST", `/multipart/` + id + `/complete`, "query"},
		{"DELETE", `/multipart/` + id, "query"},
	}
	var rs []route
	for _, r := range table {
		rs = append(rs, route{r[0], regexp.MustCompile(`^` + r[1] + `$`), r[2]})
	}
	return rs
}()

// queryNames are the query parameters the signer's multipart calls read; the owner is added
// here.
var queryNames = []string{"key", "size", "partNumbers", "sizes"}

var uidValue = regexp.MustCompile(`^[0-9a-f]{32}$`)

// signerCall is the signer's path for a browser's call (its path as sent, still escaped,
// so an encoded slash stays one) and where its owner goes.
func signerCall(method, path string) (string, string, bool) {
	if path != prefix && !strings.HasPrefix(path, prefix+"/") {
		return "", "", false
	}
	rest := strings.TrimPrefix(path, prefix)
	if rest == "" {
		rest = "/"
	}
	// `.` or `..` as an id would move the path once resolved: not one of ours either.
	for _, segment := range strings.Split(rest, "/") {
		if segment == "." || segment == ".." {
			return "", "", false
		}
	}
	for _, r := range routes {
		if r.method == method && r.path.MatchString(rest) {
			return "/uploads" + strings.TrimSuffix(rest, "/"), r.ownerIn, true
		}
	}
	return "", "", false
}

type backend struct {
	signer    string
	tokenAuth bool
	client    *http.Client
}

// apiError answers as the signer answers: {"error": {"code", "message"}}.
func apiError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	signerPath, ownerIn, ok := signerCall(r.Method, path)
	if !ok {
		apiError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %s is not an upload call", r.Method, path))
		return
	}
	body, status, code, message := jsonBody(w, r)
	if status != 0 {
		apiError(w, status, code, message)
		return
	}
	// The owner is set here from the session, never taken from the browser: keys go under
	// <prefix><owner>/ and every later call on an upload must name the same owner. With
	// tokens the signer takes it from the token instead.
	owner := ""
	if !b.tokenAuth {
		owner = currentUser(w, r)
	}
	target := b.signer + signerPath
	if ownerIn == "query" {
		asked, q := r.URL.Query(), url.Values{}
		for _, name := range queryNames {
			if v := asked[name]; len(v) == 1 {
				q.Set(name, v[0])
			}
		}
		if owner != "" {
			q.Set("owner", owner)
		}
		if len(q) > 0 {
			target += "?" + q.Encode()
		}
	} else if owner != "" {
		// Parsed and written again, so the signer sees one `owner`: this one.
		if body == nil {
			body = map[string]json.RawMessage{}
		}
		body["owner"], _ = json.Marshal(owner)
	}
	var payload io.Reader
	if r.Method == http.MethodPost && body != nil {
		data, _ := json.Marshal(body)
		payload = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target, payload)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "InternalError", "could not make the signer's request")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if auth := r.Header.Get("Authorization"); b.tokenAuth && auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the browser went away
		}
		log.Printf("signer unreachable at %s: %v", b.signer, err)
		apiError(w, http.StatusBadGateway, "SignerUnavailable", "the upload service is not reachable; try again")
		return
	}
	defer resp.Body.Close()
	// The signer's answer, refusals included, passed on as it is.
	for _, name := range []string{"WWW-Authenticate", "Retry-After"} {
		if v := resp.Header.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// jsonBody is the browser's JSON object, kept as raw values (numbers stay as sent), or nil
// when it sent its body as something else; a status, code and message when it is refused.
func jsonBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, int, string, string) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, http.StatusRequestEntityTooLarge, "BodyTooLarge", fmt.Sprintf("the request body is over %d bytes", maxBody)
	}
	if err != nil {
		return nil, http.StatusBadRequest, "InvalidBody", "could not read the request body"
	}
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType != "application/json" {
		return nil, 0, "", ""
	}
	body := map[string]json.RawMessage{}
	if len(raw) == 0 {
		return body, 0, "", ""
	}
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return nil, http.StatusBadRequest, "InvalidJson", "the body must be a JSON object"
	}
	return body, 0, "", ""
}

// currentUser is who is uploading. Use your login session's user id here; this example gives
// each browser an anonymous id in an HttpOnly cookie, so every browser has its own folder.
func currentUser(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie("uid"); err == nil && uidValue.MatchString(c.Value) {
		return c.Value
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		panic(err)
	}
	uid := hex.EncodeToString(id)
	http.SetCookie(w, &http.Cookie{Name: "uid", Value: uid, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return uid
}

func getenv(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	// The webhook sets UPLOADBUCKET_SIGNER_URL in every app container of an injected pod.
	signer := strings.TrimRight(getenv("UPLOADBUCKET_SIGNER_URL", "http://127.0.0.1:8787"), "/")
	// The signer is on the pod's loopback: never reached through a proxy from the environment.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	b := &backend{
		signer: signer,
		// With spec.uploads.auth.jwt on the UploadBucket (TOKEN_AUTH=1 here), the signer
		// checks the user's token itself and takes the owner from it: this backend forwards
		// the browser's Authorization header and names no owner.
		tokenAuth: os.Getenv("TOKEN_AUTH") == "1",
		client:    &http.Client{Transport: transport, Timeout: 60 * time.Second},
	}
	ln, err := net.Listen("tcp", ":"+getenv("PORT", "3000"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening address=127.0.0.1:%d signer=%s\n", ln.Addr().(*net.TCPAddr).Port, signer)
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	// Kubernetes sends SIGTERM first: stop accepting, finish what is in flight.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
		close(done)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
}
