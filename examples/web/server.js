// An app backend for the upload page: serves this folder (index.html, upload.js) and forwards
// /api/uploads to the signer sidecar in the same pod. `npm ci && node server.js`; PORT
// (default 3000). The journey test (tests/tests/journey.rs) runs exactly this file in a pod.
const express = require('express');
const path = require('node:path');

const app = express();

// --- the part your own backend needs (README, "Browser snippet") ---
// The webhook sets UPLOADBUCKET_SIGNER_URL in every app container of an injected pod.
const signer = process.env.UPLOADBUCKET_SIGNER_URL || 'http://127.0.0.1:8787';
// Who is uploading. Use your login session's user id here; this example gives each browser
// an anonymous id in an HttpOnly cookie, so every browser has its own folder.
function currentUser(req, res) {
  const m = /(?:^|;\s*)uid=([0-9a-f]{32})(?:;|$)/.exec(req.headers.cookie || '');
  if (m) return m[1];
  const uid = require('node:crypto').randomBytes(16).toString('hex');
  res.cookie('uid', uid, { httpOnly: true, sameSite: 'strict' });
  return uid;
}
app.use('/api/uploads', express.json(), async (req, res) => {
  // The owner is set here from the session, never taken from the browser: keys go under
  // <prefix><owner>/ and every later call on an upload must name the same owner.
  const owner = currentUser(req, res);
  const url = new URL(`${signer}/uploads${req.url === '/' ? '' : req.url}`);
  const starts = req.method === 'POST' && ['/uploads', '/uploads/multipart', '/uploads/verify'].includes(url.pathname);
  if (!starts) url.searchParams.set('owner', owner);
  try {
    const r = await fetch(url, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      body: ['GET', 'HEAD', 'DELETE'].includes(req.method) ? undefined : JSON.stringify(starts ? { ...req.body, owner } : req.body),
    });
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
const server = app.listen(port, () => console.log(`listening on :${port}; signer ${signer}`));
// Kubernetes sends SIGTERM first: stop accepting, finish what is in flight.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
