// The browser test's page script: the real @uppy/core + @uppy/aws-s3 (6.x, from npm), with
// `companionEndpoint` pointed at the test's app backend, which proxies /api/s3/* to the signer.
// Uploads one generated file as the query string says and writes the outcome into #result.
import Uppy from '@uppy/core';
import AwsS3 from '@uppy/aws-s3';

const q = new URLSearchParams(location.search);
const size = Number(q.get('size') || 1024);
const type = q.get('type') || 'image/jpeg';
const multipart = q.get('multipart') === '1';
const bytes = new Uint8Array(size);
bytes.set([0xff, 0xd8, 0xff, 0xe0]);
for (let i = 4; i < size; i++) bytes[i] = i % 251;

const show = (outcome) => {
  const status = document.getElementById('status');
  status.className = outcome.ok ? 'ok' : 'error';
  status.textContent = outcome.ok ? `Uploaded as ${outcome.key}` : outcome.message;
  document.getElementById('result').textContent = JSON.stringify(outcome);
};

try {
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    companionEndpoint: `${location.origin}/api`,
    shouldUseMultipart: () => multipart,
    getChunkSize: () => 5 * 1024 * 1024,
  });
  uppy.on('upload-progress', (file, p) => {
    document.getElementById('progress').value = p.bytesUploaded / (p.bytesTotal || 1);
  });
  uppy.addFile({ name: q.get('name') || 'photo.jpg', type, data: new Blob([bytes], { type }) });
  document.getElementById('what').textContent =
    `Uppy ${multipart ? 'multipart' : 'single'} upload, ${type}, ${size} bytes, from ${location.origin}`;
  const result = await uppy.upload();
  const done = result?.successful?.[0];
  const failed = result?.failed?.[0];
  if (done && !failed) {
    const body = done.response?.body ?? {};
    show({ ok: true, key: body.key, location: body.location ?? done.uploadURL, multipart });
  } else {
    show({ ok: false, message: String(failed?.error ?? 'no result'), multipart });
  }
} catch (e) {
  show({ ok: false, message: String(e?.message ?? e), multipart });
}
