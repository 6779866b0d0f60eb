// The script of dev mode's page (`uploadbucket-sidecar dev`, http://127.0.0.1:8787/): the real
// Uppy Dashboard (several files, drag and drop, thumbnails, per-file progress and retry)
// uploading through the signer on the page's own origin, which answers Uppy's S3 calls
// (`/s3/params`, `/s3/multipart/...`) itself, straight into the dev store. Under it, the
// objects in the dev bucket, each a link to `/dev/objects/<key>`.
//
// `npm ci && npm run build` (build.mjs) bundles it, with the Dashboard's CSS, into
// ../dashboard.bundle.js and ../dashboard.bundle.css, which are committed and compiled into
// the binary: nothing is fetched at run time.
import AwsS3 from '@uppy/aws-s3';
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';

const MiB = 1024 * 1024;
const $ = (id) => document.getElementById(id);
const root = $('dashboard');
const allowed = root.dataset.allowedTypes;
const maxSize = Number(root.dataset.maxSize);
const incoming = root.dataset.incoming;

const mib = (bytes) => `${Math.round((bytes / MiB) * 10) / 10} MiB`;

// Where dev mode serves a stored object to this page.
const objectURL = (key) => `/dev/objects/${key.split('/').map(encodeURIComponent).join('/')}`;

// What to show next to a file that failed: the signer's reason (dev mode puts its error
// message in the status text, the part of a refusal Uppy's S3 client keeps), or the storage's
// (S3's XML error, e.g. a file over the form's size range).
function reason(error) {
  const xhr = error?.request;
  const xml = typeof xhr?.responseText === 'string' ? xhr.responseText : '';
  const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];
  if (code) {
    const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1];
    return `The storage refused the upload (${code})${message ? `: ${message}` : ''}`;
  }
  return String(error?.message ?? error).replace(/^Companion request failed: /, '');
}

const uppy = new Uppy({ autoProceed: false })
  .use(Dashboard, {
    inline: true,
    target: root,
    width: '100%',
    height: 440,
    showProgressDetails: true,
    // The link on each uploaded file (its thumbnail, and "Copy link").
    showLinkToFileUploadResult: true,
    proudlyDisplayPoweredByUppy: false,
    note: `The signer allows ${allowed}, up to ${mib(maxSize)}; it refuses the rest.`,
  })
  .use(AwsS3, {
    // This origin: the signer serves the calls Uppy would make to Companion.
    companionEndpoint: window.location.origin,
    // Large files in parts, as upload.js's 'auto' does.
    shouldUseMultipart: (file) => (file.size ?? 0) >= 16 * MiB,
    getChunkSize: () => 8 * MiB,
  });

uppy.on('upload-success', (file, response) => {
  const key = response?.body?.key;
  // The store's own URL needs a signature; dev mode serves the object to this page.
  if (key) uppy.setFileState(file.id, { uploadURL: objectURL(key) });
  refresh();
});
uppy.on('upload-error', (file, error) => {
  const failed = file && uppy.getFile(file.id);
  if (!failed) return;
  // A file refused before any byte was sent has no progress yet, and the Dashboard shows
  // its own retry button only on a file with some: 0% gives it one.
  const progress = { ...failed.progress, percentage: failed.progress.percentage ?? 0 };
  uppy.setFileState(file.id, { error: reason(error), progress });
});
uppy.on('complete', () => refresh());

// The dev bucket's objects (GET /dev/objects), newest first, with their verification state.
function show(ok, text) {
  $('status').className = ok ? 'ok' : 'error';
  $('status').textContent = text;
}

async function verify(key) {
  // A pending upload's owner is its folder under the incoming area, if it has one.
  const rest = key.startsWith(incoming) ? key.slice(incoming.length).split('/') : [];
  const body = { key, ...(rest.length > 1 ? { owner: rest[0] } : {}) };
  try {
    const res = await fetch('/uploads/verify', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const v = await res.json();
    if (res.ok) show(true, `Verified ${v.key}: ${v.detectedType || v.contentType}, ${v.size} B`);
    else show(false, v.error?.message ?? `The signer answered ${res.status}.`);
  } catch (e) {
    show(false, String(e?.message ?? e));
  }
  refresh();
}

async function refresh() {
  let objects;
  try {
    ({ objects } = await (await fetch('/dev/objects')).json());
  } catch (e) {
    show(false, `Cannot list the dev bucket: ${e?.message ?? e}`);
    return;
  }
  if (objects.length === 0) {
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = 'Nothing uploaded yet.';
    const tr = document.createElement('tr');
    tr.append(td);
    $('list').replaceChildren(tr);
    return;
  }
  $('list').replaceChildren(
    ...objects.map((o) => {
      const tr = document.createElement('tr');
      const link = document.createElement('a');
      link.href = objectURL(o.key);
      link.target = '_blank';
      link.rel = 'noopener';
      link.textContent = o.key;
      const cells = [link, `${o.size} B`, o.lastModified, o.state || ''];
      for (const v of cells) {
        const td = document.createElement('td');
        td.append(v);
        tr.append(td);
      }
      const td = document.createElement('td');
      if (o.state === 'pending') {
        const b = document.createElement('button');
        b.textContent = 'Verify';
        b.addEventListener('click', () => verify(o.key));
        td.append(b);
      }
      tr.append(td);
      return tr;
    }),
  );
}

refresh();
