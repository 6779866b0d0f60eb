// uploadbucket browser client: ask your backend (which proxies the signer sidecar) for a
// presigned URL, then send the file straight to S3. Plain JavaScript, no build step.
//
//   import { uploadFile, verifyUpload } from './upload.js';
//   const { key } = await uploadFile(file, { api: '/api/uploads', onProgress: p => ... });
//   const checked = await verifyUpload(key, { api: '/api/uploads' }); // bytes match the type
//
// `owner` (optional) puts the upload in that user's folder; every call then names it. In an
// app, let your backend set it from the login session instead (examples/web/server.js does),
// so one user cannot name another.
//
// Methods: 'PUT' (one request, exact size signed), 'POST' (form with a size range: the
// storage refuses files over the limit), 'multipart' (large files in 8 MiB parts), or
// 'auto' (multipart from 16 MiB, PUT below; a POST form instead when the storage refuses the
// browser's CORS preflight of a signed URL before any byte is sent, as Ceph RGW 16 does with
// IRSA credentials). Errors are UploadError with a message a person
// can read and a `code`. A PUT of a file up to 64 MiB also sends the file's SHA-256 (where the
// page may use crypto.subtle: https, localhost), which is signed into the URL: the storage
// refuses bytes that do not match (AWS S3 and the dev store; Ceph RGW ignores it).

export class UploadError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'UploadError';
    this.code = code;
  }
}

const PART_SIZE = 8 * 1024 * 1024;
// Files up to this size get a SHA-256 checksum (read into memory once to hash).
const CHECKSUM_UP_TO = 64 * 1024 * 1024;
const MULTIPART_FROM = 16 * 1024 * 1024;

function bearer(token) {
  return token ? { authorization: `Bearer ${token}` } : {};
}

function mb(bytes) {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

// Calls the signer (through your backend) and turns its JSON errors into UploadError.
async function api(url, options) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (e) {
    throw new UploadError('Could not reach the server to start the upload. Check your connection.', 'Network');
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    /* not JSON */
  }
  if (!res.ok) {
    const code = body && body.error ? body.error.code : `HTTP${res.status}`;
    const message = body && body.error ? body.error.message : `The server answered ${res.status}.`;
    const friendly = {
      ContentTypeNotAllowed: `This kind of file is not accepted. ${message}`,
      TooLarge: `This file is too large. ${message}`,
      ContentMismatch: `This file is not what its type says. ${message}`,
      TooManyUploads: `Too many uploads at once; try again in ${res.headers.get('retry-after') || 'a few'} seconds.`,
      Unavailable: 'Uploads are unavailable right now. Please try again in a moment.',
      MissingToken: 'Sign in to upload.',
      TokenExpired: 'Your sign-in has expired: sign in again.',
    }[code];
    throw new UploadError(friendly || message, code);
  }
  return body;
}

// Reads S3's XML error code, if any.
function s3ErrorCode(xhr) {
  const m = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText || '');
  return m ? m[1] : '';
}

function storageError(xhr, limit) {
  const code = s3ErrorCode(xhr);
  const text = xhr.responseText || '';
  if (code === 'EntityTooLarge' || /too large/i.test(text)) {
    return new UploadError(`This file is too large${limit ? ` (the limit is ${mb(limit)})` : ''}.`, 'TooLarge');
  }
  if (/expired/i.test(text) || code === 'ExpiredToken') {
    return new UploadError('The upload link expired before the upload started. Please try again.', 'Expired');
  }
  if (xhr.status === 403) {
    return new UploadError('The storage refused the file: it does not match what was allowed (type or size), or the link expired.', code || 'Forbidden');
  }
  return new UploadError(`The storage refused the upload (${xhr.status}${code ? ` ${code}` : ''}).`, code || `HTTP${xhr.status}`);
}

// One HTTP request with upload progress (fetch cannot report upload progress).
function send(method, url, { headers = {}, body, onProgress, limit }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve(xhr) : reject(storageError(xhr, limit)));
    xhr.onerror = () =>
      reject(new UploadError('Could not reach the storage: network error, or this site is not allowed to upload there (CORS).', 'Network'));
    xhr.send(body);
  });
}

// Base64 SHA-256 of the file, or undefined where the page cannot hash (insecure origin).
async function sha256(file) {
  if (file.size > CHECKSUM_UP_TO || !globalThis.crypto || !crypto.subtle) return undefined;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
  return btoa(String.fromCharCode(...digest));
}

async function uploadPut(file, opts) {
  const checksumSHA256 = await sha256(file);
  const signed = await api(opts.api, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.auth },
    body: JSON.stringify({ filename: file.name, contentType: file.type, size: file.size, checksumSHA256, owner: opts.owner }),
  });
  await send('PUT', signed.uploadURL, { headers: signed.headers, body: file, onProgress: opts.onProgress });
  return { key: signed.key, method: 'PUT' };
}

async function uploadPost(file, opts) {
  const signed = await api(opts.api, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.auth },
    body: JSON.stringify({ filename: file.name, contentType: file.type, method: 'POST', owner: opts.owner }),
  });
  const form = new FormData();
  for (const [k, v] of Object.entries(signed.fields)) form.append(k, v);
  form.append('file', file); // must come last
  await send('POST', signed.url, { body: form, onProgress: opts.onProgress, limit: signed.maxSizeBytes });
  return { key: signed.key, method: 'POST' };
}

async function uploadMultipart(file, opts) {
  const base = `${opts.api}/multipart`;
  const json = { 'content-type': 'application/json', ...opts.auth };
  const { key, uploadId } = await api(base, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ filename: file.name, type: file.type, size: file.size, owner: opts.owner }),
  });
  const id = encodeURIComponent(uploadId);
  // Every later call names the key and, for an owner's upload, the owner.
  const k = encodeURIComponent(key) + (opts.owner ? `&owner=${encodeURIComponent(opts.owner)}` : '');
  try {
    const count = Math.max(1, Math.ceil(file.size / PART_SIZE));
    const numbers = Array.from({ length: count }, (_, i) => i + 1);
    // Each part's exact size is signed too: the storage refuses a part of any other size.
    const sizes = numbers.map((n) => Math.min(n * PART_SIZE, file.size) - (n - 1) * PART_SIZE);
    const { presignedUrls } = await api(`${base}/${id}/batch?key=${k}&partNumbers=${numbers.join(',')}&sizes=${sizes.join(',')}`, { headers: opts.auth });
    const parts = [];
    let done = 0;
    for (const n of numbers) {
      const chunk = file.slice((n - 1) * PART_SIZE, Math.min(n * PART_SIZE, file.size));
      const xhr = await send('PUT', presignedUrls[n], {
        body: chunk,
        onProgress: (loaded) => opts.onProgress && opts.onProgress(done + loaded, file.size),
      });
      done += chunk.size;
      const etag = xhr.getResponseHeader('ETag');
      if (!etag) throw new UploadError('The storage did not expose the ETag header (check the bucket CORS rules).', 'NoETag');
      parts.push({ PartNumber: n, ETag: etag });
    }
    await api(`${base}/${id}/complete?key=${k}`, { method: 'POST', headers: json, body: JSON.stringify({ parts }) });
  } catch (e) {
    // Leave nothing half-uploaded behind.
    fetch(`${base}/${id}?key=${k}`, { method: 'DELETE', headers: opts.auth }).catch(() => {});
    throw e;
  }
  return { key, method: 'multipart' };
}

// `token`: the signed-in user's access token, for buckets that require one
// (spec.uploads.auth.jwt); sent as `Authorization: Bearer` on every call to the API.
export async function uploadFile(file, { api: apiUrl = '/api/uploads', method = 'auto', onProgress, owner, token } = {}) {
  if (!file) throw new UploadError('Choose a file first.', 'NoFile');
  if (!file.type) throw new UploadError('The browser could not tell the file type; try a file with a usual extension.', 'NoType');
  const opts = { api: apiUrl, onProgress, owner: owner || undefined, auth: bearer(token) };
  if (method === 'POST') return uploadPost(file, opts);
  if (method === 'multipart') return uploadMultipart(file, opts);
  if (method !== 'auto') return uploadPut(file, opts);
  // auto: multipart from 16 MiB, PUT below; and a POST form when the storage refuses the
  // browser's CORS preflight of the signed URL before a byte is sent (Ceph RGW 16 does so
  // for URLs signed with IRSA credentials; a form carries its credentials in its fields).
  let sent = 0;
  const tracked = {
    ...opts,
    onProgress: (loaded, total) => {
      sent = Math.max(sent, loaded);
      if (onProgress) onProgress(loaded, total);
    },
  };
  try {
    return await (file.size >= MULTIPART_FROM ? uploadMultipart(file, tracked) : uploadPut(file, tracked));
  } catch (e) {
    if (!(e instanceof UploadError) || e.code !== 'Network' || sent > 0) throw e;
    return uploadPost(file, opts);
  }
}

// After an upload: the signer reads the object's first bytes and checks them against its
// type (a bucket with verification on). Resolves to {key, size, contentType, detectedType,
// etag}; an object that fails is deleted (or quarantined) and this throws UploadError with
// the reason (code ContentMismatch, ContentTypeNotAllowed or TooLarge).
export async function verifyUpload(key, { api: apiUrl = '/api/uploads', owner, token } = {}) {
  return api(`${apiUrl}/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(token) },
    body: JSON.stringify({ key, owner: owner || undefined }),
  });
}
