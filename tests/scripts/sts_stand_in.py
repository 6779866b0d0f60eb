#!/usr/bin/env python3
"""An STS stand-in for measuring the signer as it starts in a pod with IRSA: every
AssumeRoleWithWebIdentity gets the same hour-long session. Over plain HTTP, or over TLS with a
chain to verify the way a pod's TLS to AWS's STS does (a CA, an intermediate, a certificate
for localhost).

  sts_stand_in.py pki DIR          writes DIR/chain.pem + DIR/leaf.key (what the server sends)
                                   and DIR/roots.pem (the machine's roots and the CA: the
                                   signer's SSL_CERT_FILE); needs openssl
  sts_stand_in.py serve PORT [DIR] serves on 127.0.0.1:PORT, over TLS with DIR's certificates

Used by tests/scripts/startup-order.sh and tests/bench.sh.
"""
import datetime
import http.server
import os
import ssl
import subprocess
import sys


def pki(out):
    os.makedirs(out, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True)

    def write(name, text):
        with open(os.path.join(out, name), "w") as f:
            f.write(text)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=stand-in-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    write("int.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    write("leaf.ext", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n")
    for name, subject, issuer in (("int", "stand-in-intermediate", "ca"), ("leaf", "localhost", "int")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={subject}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    read = lambda name: open(os.path.join(out, name)).read()
    write("chain.pem", read("leaf.pem") + read("int.pem"))
    system = "/etc/ssl/certs/ca-certificates.crt"
    write("roots.pem", (open(system).read() if os.path.exists(system) else "") + read("ca.pem"))


def serve(port, certs):
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><AssumedRoleUser><Arn>arn:aws:sts::000000000000:assumed-role/upload/s</Arn>
<AssumedRoleId>AROASTANDINEXAMPLE:s</AssumedRoleId></AssumedRoleUser><Credentials>
<AccessKeyId>ASIASTANDINEXAMPLE00</AccessKeyId><SecretAccessKey>standinsecretstandinsecretstandinsecret0</SecretAccessKey>
<SessionToken>stand-in-session</SessionToken><Expiration>{until}</Expiration></Credentials>
</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""".encode()

    class Sts(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "text/xml")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Sts)
    if certs:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(os.path.join(certs, "chain.pem"), os.path.join(certs, "leaf.key"))
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pki":
        pki(sys.argv[2])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
    else:
        sys.exit(__doc__)
