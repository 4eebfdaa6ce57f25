// The /drive page in a real browser: Debian's chromium, driven by Playwright (the
// `playwright-core` package, which never downloads a browser of its own).
//
// Run by `make e2e-drive` through the ignored test `drive::browser_session_in_chromium`
// (services/homeserver/tests/it/drive.rs), which starts a homeserver with the page on,
// creates a user and passes, in the environment:
//   DRIVE_URL    http://127.0.0.1:<port> of the homeserver
//   DRIVE_KEY    the user's public key (z-base-32)
//   DRIVE_TOKEN  a bearer token of a root session of that user
//   DRIVE_SHOTS  directory for the screenshots (docs/drive)
//   CHROMIUM     the browser (default /usr/bin/chromium)
//
// The same steps run at desktop and at phone width: sign in, upload two files by drag
// and drop into a new folder (and overwrite one through the file picker, so it has a
// history), open the folder, preview the text (with its version history and the
// verified Merkle root) and the image, delete, sign out. After each step what the page
// shows is checked, and what the server holds is checked over HTTP, independently.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { join } from 'node:path';

const base = required('DRIVE_URL');
const key = required('DRIVE_KEY');
const token = required('DRIVE_TOKEN');
const shots = required('DRIVE_SHOTS');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run this through make e2e-drive)`);
  return value;
}

function check(condition, what) {
  if (!condition) throw new Error('check failed: ' + what);
  console.log('  ok: ' + what);
}

// ---------- fixtures ----------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** A small RGB gradient PNG, so the preview shows a picture and not a blank. */
function png(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      const p = row + 1 + x * 3;
      rows[p] = Math.round((255 * x) / width);
      rows[p + 1] = Math.round((255 * y) / height);
      rows[p + 2] = 180;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const PHOTO = png(160, 100);
const NOTES_V1 = 'Shopping list\n- bread\n- tea\n';
const NOTES_V2 = 'Shopping list\n- bread\n- tea\n- oranges (added later)\n';

// ---------- the server, checked independently of the page ----------

async function server(path) {
  const response = await fetch(base + path, { headers: { Authorization: 'Bearer ' + token } });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

// ---------- one session at one size ----------

async function session(browser, label, viewport) {
  console.log(`${label} (${viewport.width}x${viewport.height})`);
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, hasTouch: label === 'phone' });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Refused requests the steps cause on purpose (the wrong token's 401, the 404 of a
  // folder that holds no file yet) are logged by the browser too; script errors are not
  // expected at all.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console: ' + m.text());
  });
  const folder = `/pub/${label}-photos/`;
  let step = 0;
  const shot = async (name) => {
    step += 1;
    const file = join(shots, `${label}-${String(step).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
  };
  const row = (name) => page.locator('#listing li', { hasText: name });

  // 1. The sign-in form, the key prefilled from ?user=.
  await page.goto(`${base}/drive?user=${key}`);
  check((await page.inputValue('#key')) === key, 'the key is prefilled from ?user=');
  await shot('sign-in');

  // A wrong token is refused with a clear message.
  await page.fill('#token', 'A'.repeat(43));
  await page.click('#signin-button');
  await page.locator('#signin-error').waitFor();
  check((await page.textContent('#signin-error')).includes('not accepted'), 'a wrong token is refused');

  // 2. Signed in: the drive's two roots.
  await page.fill('#token', token);
  await page.click('#signin-button');
  await row('pub').waitFor();
  check(await row('priv').isVisible(), 'signed in: pub and priv are listed');
  await shot('signed-in');

  // 3. A new folder, two files dropped into it, one overwritten through the picker.
  await row('pub').click();
  await page.click('#new-folder');
  await page.fill('#folder-name', `${label}-photos`);
  await page.click('#folder-form button[type="submit"]');
  check((await page.textContent('#crumbs')).includes(`${label}-photos`), 'the new folder is open');
  await page.evaluate(async (files) => {
    const transfer = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], f.name, { type: f.type }));
    }
    const zone = document.getElementById('dropzone');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
  }, [
    { name: 'notes.txt', type: 'text/plain', base64: Buffer.from(NOTES_V1).toString('base64') },
    { name: 'photo.png', type: 'image/png', base64: PHOTO.toString('base64') },
  ]);
  await page.locator('.upload.done', { hasText: 'photo.png' }).waitFor();
  await row('photo.png').waitFor();
  check((await page.locator('.upload.done').count()) === 2, 'both dropped files uploaded (progress at 100 %)');
  await page.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(NOTES_V2) });
  await page.locator('.upload.done').nth(2).waitFor();
  const photo = await server(`/storage/${key}${folder}photo.png`);
  check(photo.status === 200 && photo.body.equals(PHOTO), 'the server holds the PNG byte for byte');
  const notes = await server(`/storage/${key}${folder}notes.txt`);
  check(notes.body.toString() === NOTES_V2, 'the server holds the overwritten text');
  await shot('uploaded');

  // 4. Up to pub/, where the folder now exists on the server, and into it again.
  await page.locator('#crumbs button', { hasText: 'pub' }).click();
  await row(`${label}-photos`).waitFor();
  check(!(await row(`${label}-photos`).textContent()).includes('empty until'), 'the folder exists on the server');
  await row(`${label}-photos`).click();
  await row('notes.txt').waitFor();
  check((await page.locator('#listing li').count()) === 2, 'the folder lists its two files');
  await shot('folder');

  // 5. Text preview, its version history, the older version, the verified root.
  await row('notes.txt').click();
  await page.locator('#preview-text').waitFor();
  check((await page.textContent('#preview-text')) === NOTES_V2, 'the text preview shows the current text');
  await page.locator('#versions li').nth(1).waitFor();
  check((await page.locator('#versions li').count()) === 2, 'the history lists both versions');
  await page.locator('#merkle-check.verified').waitFor();
  const root = JSON.parse((await server(`/merkle/${key}/root`)).body.toString());
  check((await page.textContent('#merkle-root')) === root.root, 'the page shows the current signed root');
  await shot('text-preview');
  await page.locator('#versions button', { hasText: 'View' }).click();
  await page.waitForFunction((text) => document.getElementById('preview-text')?.textContent === text, NOTES_V1);
  check(true, 'the older version previews its own text');

  // 6. Image preview.
  await row('photo.png').click();
  await page.waitForFunction(() => {
    const img = document.getElementById('preview-image');
    return img && img.complete && img.naturalWidth === 160;
  });
  check(true, 'the image preview shows the PNG (160 px wide)');
  await shot('image-preview');

  // 7. Delete.
  await row('notes.txt').click();
  await page.locator('#preview-text').waitFor();
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('#delete');
  await row('notes.txt').waitFor({ state: 'detached' });
  check((await server(`/storage/${key}${folder}notes.txt`)).status === 404, 'the server no longer has the file');
  check(await row('photo.png').isVisible(), 'the other file is still listed');
  await shot('deleted');

  // 8. Sign out: the form is back, the token forgotten by the tab.
  await page.click('#signout');
  await page.locator('#signin').waitFor();
  check((await page.inputValue('#token')) === '', 'the token field is empty');
  check((await page.evaluate(() => sessionStorage.length)) === 0, 'nothing is left in sessionStorage');
  await shot('signed-out');

  check(problems.length === 0, 'no script errors: ' + problems.join('; '));
  await context.close();
}

mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  await session(browser, 'desktop', { width: 1280, height: 800 });
  await session(browser, 'phone', { width: 390, height: 844 });
  console.log('drive e2e: all steps passed');
} finally {
  await browser.close();
}
