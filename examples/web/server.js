// An app backend for the upload page: serves this folder (index.html, upload.js) and forwards
// /api/uploads to the signer sidecar in the same pod. `npm ci && node server.js`; PORT
// (default 3000). The journey test (tests/tests/journey.rs) runs exactly this file in a pod.
const express = require('express');
const path = require('node:path');

const app = express();

// --- the part your own backend needs (docs/guides/browser-snippet.md) ---
// The webhook sets UPLOADBUCKET_SIGNER_URL in every app container of an injected pod.
const signer = process.env.UPLOADBUCKET_SIGNER_URL || 'http://127.0.0.1:8787';
// With spec.uploads.auth.jwt on the UploadBucket (TOKEN_AUTH=1 here), the signer checks the
// user's token itself and takes the owner from it: this backend forwards the browser's
// Authorization header and names no owner.
const tokenAuth = process.env.TOKEN_AUTH === '1';
// Who is uploading. Use your login session's user id here; this example gives each browser
// an anonymous id in an HttpOnly cookie, so every browser has its own folder.
function currentUser(req, res) {
  const m = /(?:^|;\s*)uid=([0-9a-f]{32})(?:;|$)/.exec(req.headers.cookie || '');
  if (m) return m[1];
  const uid = require('node:crypto').randomBytes(16).toString('hex');
  res.cookie('uid', uid, { httpOnly: true, sameSite: 'strict' });
  return uid;
}
// The signer calls a browser may make, under /api/uploads: method, path, and where the
// session's owner goes. Anything else (the signer's other routes, dot segments, encoded
// slashes: any path outside this table) is refused here and never reaches the signer.
const ID = '[A-Za-z0-9._~-]+';
const routes = [
  ['POST', '/', 'body'],
  ['POST', '/multipart', 'body'],
  ['POST', '/verify', 'body'],
  ['GET', `/multipart/${ID}/(?:batch|[0-9]+)`, 'query'],
  ['GET', `/multipart/${ID}`, 'query'],
  ['POST', `/multipart/${ID}/complete`, 'query'],
  ['DELETE', `/multipart/${ID}`, 'query'],
].map(([method, path, owner]) => ({ method, path: new RegExp(`^${path}$`), owner }));
app.use('/api/uploads', express.json(), async (req, res) => {
  const route = routes.find((r) => r.method === req.method && r.path.test(req.path));
  const path = `/uploads${req.path === '/' ? '' : req.path}`;
  const url = route && new URL(`${signer}${path}`);
  // A path URL parsing would move (`.` or `..` as an id) is not one of ours either.
  if (!route || url.pathname !== path) {
    return res.status(404).json({ error: { code: 'NotFound', message: `${req.method} ${req.path} is not an upload call` } });
  }
  // The owner is set here from the session, never taken from the browser: keys go under
  // <prefix><owner>/ and every later call on an upload must name the same owner. With tokens
  // the signer takes it from the token instead.
  const headers = { 'content-type': 'application/json' };
  const owner = tokenAuth ? undefined : currentUser(req, res);
  if (tokenAuth && req.headers.authorization) headers.authorization = req.headers.authorization;
  if (route.owner === 'query') {
    for (const name of ['key', 'size', 'partNumbers', 'sizes']) {
      if (typeof req.query[name] === 'string') url.searchParams.set(name, req.query[name]);
    }
    if (owner) url.searchParams.set('owner', owner);
  }
  try {
    const r = await fetch(url, {
      method: req.method,
      headers,
      body: req.method === 'POST' ? JSON.stringify(route.owner === 'body' && owner ? { ...req.body, owner } : req.body) : undefined,
    });
    if (r.headers.has('www-authenticate')) res.set('www-authenticate', r.headers.get('www-authenticate'));
    if (r.headers.has('retry-after')) res.set('retry-after', r.headers.get('retry-after'));
    res.status(r.status).type('application/json').send(await r.text());
  } catch (e) {
    console.error(`signer unreachable at ${signer}: ${e.cause?.code || e.message}`);
    res.status(502).json({ error: { code: 'SignerUnavailable', message: 'the upload service is not reachable; try again' } });
  }
});
// --- end ---

// The page. WEB_ROOT serves a whole folder instead (the journey test's image adds its harness).
if (process.env.WEB_ROOT) {
  app.use(express.static(process.env.WEB_ROOT));
} else {
  for (const file of ['index.html', 'upload.js']) {
    app.get(file === 'index.html' ? '/' : `/${file}`, (_req, res) => res.sendFile(path.join(__dirname, file)));
  }
}
const port = Number(process.env.PORT || 3000);
const server = app.listen(port, () => console.log(`listening address=127.0.0.1:${server.address().port} signer=${signer}`));
// Kubernetes sends SIGTERM first: stop accepting, finish what is in flight.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
