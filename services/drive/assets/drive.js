// Pubky Drive: a file explorer over this homeserver's own REST API, same origin only.
//
// Everything a user sees is fetched with `Authorization: Bearer <token>` from
// `/storage/<key>/...` (listings, reads, uploads, deletes), `/versions/<key>/...` (a
// file's history) and `/merkle/<key>/root` (the signed root of the tree being viewed).
// The token lives in sessionStorage: this tab only, gone when it closes.
//
// Folders are implicit on this server (a folder exists while a file lies under it), so
// "New folder" opens an empty folder in this tab; it appears on the server with the
// first file uploaded into it, and is forgotten if the tab closes before that.
//
// Names from the server are only ever inserted with textContent, never as HTML.
'use strict';

const STORE_KEY = 'pubky-drive';
const PAGE = 1000;
const TEXT_PREVIEW_MAX = 512 * 1024;
const IMAGE_PREVIEW_MAX = 8 * 1024 * 1024;
const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-ndjson|toml|yaml)\b)/;
const TEXT_EXTENSIONS = /\.(txt|md|json|csv|tsv|xml|html?|css|js|mjs|ts|rs|py|toml|ya?ml|log|ini|sh)$/i;
const Z32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

const $ = (id) => document.getElementById(id);
let session = null;           // { key, token }
let cwd = '/';                // '/', '/pub/', '/pub/photos/'
let selected = null;          // { path, version } of the file shown in the details pane
let pendingFolders = new Set(); // folders opened in this tab that hold no file yet
let objectUrls = [];

// ---------- requests ----------

function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

function storageUrl(path) {
  return '/storage/' + session.key + encodePath(path);
}

async function call(url, init = {}) {
  const headers = new Headers(init.headers || {});
  headers.set('Authorization', 'Bearer ' + session.token);
  const response = await fetch(url, { ...init, headers, cache: 'no-store' });
  if (response.status === 401 && session) {
    endSession('Your session has ended. Sign in again.');
    throw new Error('signed out');
  }
  return response;
}

async function failure(response) {
  const text = (await response.text()).trim();
  return `${response.status} ${text || response.statusText}`;
}

function setStatus(text, isError = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('error', isError);
}

// ---------- session ----------

async function signIn(key, token) {
  const response = await fetch('/auth/grant/session', {
    headers: { Authorization: 'Bearer ' + token },
    cache: 'no-store',
  });
  if (response.status === 401 || response.status === 403) {
    throw new Error('That public key and token were not accepted.');
  }
  if (!response.ok) throw new Error('Sign-in failed: ' + (await failure(response)));
  const info = await response.json();
  if (info.pubky !== key) {
    throw new Error('That token belongs to another public key.');
  }
  return info;
}

function showSignedIn(info) {
  $('signin').hidden = true;
  $('drive').hidden = false;
  $('signout').hidden = false;
  const who = $('who');
  who.hidden = false;
  who.textContent = session.key.slice(0, 8) + '…' + session.key.slice(-4) +
    (info ? ' · ' + info.capabilities.join(' ') : '');
  who.title = session.key;
}

function endSession(message) {
  session = null;
  sessionStorage.removeItem(STORE_KEY);
  pendingFolders = new Set();
  cwd = '/';
  closeDetails();
  $('listing').replaceChildren();
  $('uploads').replaceChildren();
  $('drive').hidden = true;
  $('signout').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('token').value = '';
  const error = $('signin-error');
  error.textContent = message || '';
  error.hidden = !message;
}

async function onSignIn(event) {
  event.preventDefault();
  const key = $('key').value.trim();
  const token = $('token').value.trim();
  const button = $('signin-button');
  button.disabled = true;
  $('signin-error').hidden = true;
  try {
    const info = await signIn(key, token);
    session = { key, token };
    sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    showSignedIn(info);
    await open('/');
  } catch (e) {
    const error = $('signin-error');
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// ---------- browsing ----------

async function listDir(dir) {
  const names = [];
  let cursor = '';
  for (;;) {
    const query = '?shallow=true&limit=' + PAGE + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
    const response = await call(storageUrl(dir) + query);
    if (response.status === 404) return names;
    if (!response.ok) throw new Error(await failure(response));
    const body = await response.text();
    const lines = body ? body.split('\n') : [];
    const prefix = 'pubky://' + session.key;
    for (const line of lines) {
      const path = line.startsWith(prefix) ? line.slice(prefix.length) : line;
      if (path.startsWith(dir) && path.length > dir.length) names.push(path.slice(dir.length));
    }
    if (lines.length < PAGE) return names;
    cursor = lines[lines.length - 1];
  }
}

async function open(dir) {
  if (dir !== cwd) {
    for (const row of document.querySelectorAll('#uploads .upload.done')) row.remove();
  }
  cwd = dir;
  closeDetails();
  renderCrumbs();
  $('folder-form').hidden = true;
  const atRoot = dir === '/';
  $('dropzone').classList.toggle('root', atRoot);
  $('new-folder').disabled = atRoot;
  $('file-input').disabled = atRoot;
  document.querySelector('label[for="file-input"]').classList.toggle('disabled', atRoot);
  setStatus(atRoot ? 'Public files are under pub/, private ones under priv/.' : 'Loading…');
  let names;
  try {
    names = atRoot ? ['pub/', 'priv/'] : await listDir(dir);
  } catch (e) {
    if (e.message === 'signed out') return;
    renderListing([]);
    setStatus('Could not list this folder: ' + e.message, true);
    return;
  }
  for (const folder of pendingFolders) {
    const present = names.includes(folder.slice(dir.length));
    if (folder.startsWith(dir) && present) pendingFolders.delete(folder);
  }
  for (const folder of pendingFolders) {
    const rest = folder.slice(dir.length);
    if (folder.startsWith(dir) && rest.indexOf('/') === rest.length - 1 && !names.includes(rest)) {
      names.push(rest);
    }
  }
  names.sort((a, b) => {
    const folderFirst = Number(!a.endsWith('/')) - Number(!b.endsWith('/'));
    return folderFirst || a.localeCompare(b);
  });
  renderListing(names);
  if (!atRoot) setStatus(`${names.length} item${names.length === 1 ? '' : 's'} in ${dir}`);
  refreshMerkle();
}

function renderCrumbs() {
  const crumbs = $('crumbs');
  crumbs.replaceChildren();
  const parts = cwd.split('/').filter(Boolean);
  const add = (label, target) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = label;
    button.addEventListener('click', () => open(target));
    crumbs.append(button);
  };
  add('Drive', '/');
  let path = '/';
  for (const part of parts) {
    path += part + '/';
    const separator = document.createElement('span');
    separator.textContent = '/';
    crumbs.append(separator);
    add(part, path);
  }
}

function renderListing(names) {
  const listing = $('listing');
  listing.replaceChildren();
  $('empty').hidden = names.length > 0 || cwd === '/';
  for (const name of names) {
    const isFolder = name.endsWith('/');
    const path = cwd + name;
    const item = document.createElement('li');
    item.dataset.path = path;
    const button = document.createElement('button');
    button.type = 'button';
    const icon = document.createElement('span');
    icon.className = isFolder ? 'icon folder' : 'icon file';
    icon.setAttribute('aria-hidden', 'true');
    const label = document.createElement('span');
    label.className = 'name';
    label.textContent = isFolder ? name.slice(0, -1) : name;
    button.append(icon, label);
    if (pendingFolders.has(path)) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = 'empty until a file is uploaded';
      button.append(tag);
    }
    button.addEventListener('click', () => (isFolder ? open(path) : select(path)));
    item.append(button);
    listing.append(item);
  }
}

// ---------- details: preview, versions, download, delete ----------

function clearObjectUrls() {
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls = [];
}

function closeDetails() {
  selected = null;
  clearObjectUrls();
  $('details').hidden = true;
  for (const li of document.querySelectorAll('#listing li.selected')) li.classList.remove('selected');
}

function formatSize(bytes) {
  if (bytes == null || Number.isNaN(bytes)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit ? value.toFixed(1) : value) + ' ' + units[unit];
}

function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

function fileUrl(path, version) {
  if (version) return '/versions/' + session.key + encodePath(path) + '?seq=' + version;
  return storageUrl(path);
}

async function select(path, version = null) {
  selected = { path, version };
  clearObjectUrls();
  for (const li of document.querySelectorAll('#listing li')) {
    li.classList.toggle('selected', li.dataset.path === path);
  }
  $('details').hidden = false;
  // On a phone the details are below the listing: bring them into view.
  if (window.matchMedia('(max-width: 759px)').matches) $('details').scrollIntoView({ block: 'start' });
  $('details-name').textContent = baseName(path) + (version ? ` (version ${version})` : '');
  $('details-meta').textContent = 'Loading…';
  $('preview').replaceChildren();
  $('delete').disabled = Boolean(version);
  try {
    const head = await call(fileUrl(path, version), { method: 'HEAD' });
    if (!head.ok) throw new Error(`${head.status} ${head.statusText}`);
    const size = Number(head.headers.get('content-length'));
    const type = head.headers.get('content-type') || 'application/octet-stream';
    const modified = head.headers.get('last-modified');
    $('details-meta').textContent = [formatSize(size), type, modified].filter(Boolean).join(' · ');
    await preview(path, version, type, size);
  } catch (e) {
    if (e.message === 'signed out') return;
    $('details-meta').textContent = 'Could not read this file: ' + e.message;
  }
  if (!version) await loadVersions(path);
}

async function preview(path, version, type, size) {
  const box = $('preview');
  const isImage = type.startsWith('image/') && size <= IMAGE_PREVIEW_MAX;
  const isText = (TEXT_TYPES.test(type) || TEXT_EXTENSIONS.test(path)) && size <= TEXT_PREVIEW_MAX;
  if (!isImage && !isText) {
    const note = document.createElement('p');
    note.className = 'hint';
    note.textContent = 'No preview for this file; download it to open it.';
    box.replaceChildren(note);
    return;
  }
  const response = await call(fileUrl(path, version));
  if (!response.ok) throw new Error(await failure(response));
  if (isImage) {
    const url = URL.createObjectURL(await response.blob());
    objectUrls.push(url);
    const img = document.createElement('img');
    img.src = url;
    img.alt = baseName(path);
    img.id = 'preview-image';
    box.replaceChildren(img);
  } else {
    const pre = document.createElement('pre');
    pre.id = 'preview-text';
    pre.textContent = await response.text();
    box.replaceChildren(pre);
  }
}

async function loadVersions(path) {
  const list = $('versions');
  list.replaceChildren();
  const response = await call('/versions/' + session.key + encodePath(path) + '?limit=20');
  if (!response.ok) {
    const item = document.createElement('li');
    item.textContent = 'No history: ' + (await failure(response));
    list.append(item);
    return;
  }
  const history = await response.json();
  for (const version of history.versions) {
    const item = document.createElement('li');
    const when = new Date(version.ts).toLocaleString();
    const what = version.op === 'DEL' ? 'deleted' : formatSize(version.content_length);
    item.textContent = `#${version.seq} ${what} · ${when}${version.current ? ' · current' : ''}`;
    if (version.op === 'PUT' && version.readable && !version.current) {
      const view = document.createElement('button');
      view.type = 'button';
      view.className = 'quiet';
      view.textContent = 'View';
      view.addEventListener('click', () => select(path, version.seq));
      item.append(view);
    }
    list.append(item);
  }
}

async function download() {
  if (!selected) return;
  const { path, version } = selected;
  const response = await call(fileUrl(path, version));
  if (!response.ok) return setStatus('Download failed: ' + (await failure(response)), true);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = baseName(path);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function remove() {
  if (!selected || selected.version) return;
  const { path } = selected;
  if (!window.confirm(`Delete ${baseName(path)}?`)) return;
  const response = await call(storageUrl(path), { method: 'DELETE' });
  if (response.status !== 204) return setStatus('Delete failed: ' + (await failure(response)), true);
  setStatus('Deleted ' + baseName(path));
  await open(cwd);
  setStatus('Deleted ' + baseName(path));
}

// ---------- uploads ----------

function uploadOne(file, path) {
  const row = document.createElement('div');
  row.className = 'upload';
  const name = document.createElement('span');
  name.textContent = baseName(path);
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = '0 %';
  const bar = document.createElement('progress');
  bar.max = 100;
  bar.value = 0;
  row.append(name, state, bar);
  $('uploads').append(row);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', storageUrl(path));
    xhr.setRequestHeader('Authorization', 'Bearer ' + session.token);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round((e.loaded / e.total) * 100);
      state.textContent = bar.value + ' %';
    });
    xhr.addEventListener('load', () => {
      const ok = xhr.status === 201 || xhr.status === 202 || xhr.status === 204;
      bar.value = ok ? 100 : bar.value;
      row.classList.add(ok ? 'done' : 'failed');
      state.textContent = ok ? 'uploaded' : `failed: ${xhr.status} ${xhr.responseText.trim()}`;
      resolve(ok);
    });
    xhr.addEventListener('error', () => {
      row.classList.add('failed');
      state.textContent = 'failed: network error';
      resolve(false);
    });
    xhr.send(file);
  });
}

async function upload(files) {
  if (!session || cwd === '/' || files.length === 0) return;
  const dir = cwd;
  let failed = 0;
  // One at a time: a user's writes are serialized by the server anyway.
  for (const file of files) {
    if (!(await uploadOne(file, dir + file.name))) failed += 1;
  }
  if (cwd === dir) await open(dir);
  setStatus(failed ? `${failed} of ${files.length} uploads failed` : `Uploaded ${files.length} file${files.length === 1 ? '' : 's'}`, failed > 0);
}

function setUpDropzone() {
  const zone = $('dropzone');
  // A file dropped outside the zone must not make the browser leave the page.
  for (const type of ['dragover', 'drop']) window.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    upload([...(e.dataTransfer?.files || [])]);
  });
}

// ---------- folders ----------

function createFolder(event) {
  event.preventDefault();
  const name = $('folder-name').value.trim();
  if (!name || name.includes('/') || name === '.' || name === '..') {
    setStatus('A folder name is one path segment: no "/", not "." or "..".', true);
    return;
  }
  const path = cwd + name + '/';
  pendingFolders.add(path);
  $('folder-name').value = '';
  $('folder-form').hidden = true;
  open(path);
}

// ---------- Merkle root ----------

function z32Decode(text) {
  const bytes = new Uint8Array(32);
  let bits = 0;
  let value = 0;
  let index = 0;
  for (const char of text) {
    const digit = Z32.indexOf(char);
    if (digit < 0) return null;
    value = (value << 5) | digit;
    bits += 5;
    if (bits >= 8 && index < 32) {
      bytes[index++] = (value >> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return index === 32 ? bytes : null;
}

function hexDecode(text) {
  const pairs = text.match(/../g) || [];
  return new Uint8Array(pairs.map((pair) => parseInt(pair, 16)));
}

async function verifyRoot(root) {
  if (!root.signature) return 'Not signed by this server.';
  const signer = z32Decode(root.signer);
  if (!signer || !crypto.subtle) return 'The signature could not be checked in this browser.';
  try {
    const key = await crypto.subtle.importKey('raw', signer, { name: 'Ed25519' }, false, ['verify']);
    const ok = await crypto.subtle.verify(
      { name: 'Ed25519' }, key, hexDecode(root.signature), new TextEncoder().encode(root.statement));
    return ok ? true : false;
  } catch (e) {
    return 'The signature could not be checked in this browser.';
  }
}

async function refreshMerkle() {
  const privateTree = cwd.startsWith('/priv/');
  $('merkle-tree').textContent = privateTree ? '/priv/' : '/pub/';
  const check = $('merkle-check');
  try {
    const response = await call('/merkle/' + session.key + '/root' + (privateTree ? '?tree=priv' : ''));
    if (!response.ok) throw new Error(await failure(response));
    const root = await response.json();
    $('merkle-root').textContent = root.root;
    $('merkle-meta').textContent = `after event ${root.seq} · signed by homeserver ${root.signer}`;
    const verdict = await verifyRoot(root);
    check.className = 'meta ' + (verdict === true ? 'verified' : verdict === false ? 'unverified' : '');
    check.textContent = verdict === true ? '✓ Signature verified (Ed25519), over the statement:'
      : verdict === false ? '✗ The signature does not verify.' : verdict;
    $('merkle-statement').textContent = root.statement;
  } catch (e) {
    if (e.message === 'signed out') return;
    $('merkle-root').textContent = '';
    $('merkle-meta').textContent = 'Root unavailable: ' + e.message;
    check.textContent = '';
    $('merkle-statement').textContent = '';
  }
}

// ---------- start ----------

function start() {
  $('signin-form').addEventListener('submit', onSignIn);
  $('signout').addEventListener('click', () => endSession());
  $('refresh').addEventListener('click', () => open(cwd));
  $('file-input').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    upload(files);
  });
  $('new-folder').addEventListener('click', () => {
    $('folder-form').hidden = false;
    $('folder-name').focus();
  });
  $('folder-cancel').addEventListener('click', () => { $('folder-form').hidden = true; });
  $('folder-form').addEventListener('submit', createFolder);
  $('details-close').addEventListener('click', closeDetails);
  $('download').addEventListener('click', download);
  $('delete').addEventListener('click', remove);
  setUpDropzone();

  const user = new URLSearchParams(location.search).get('user');
  if (user) $('key').value = user;
  const saved = sessionStorage.getItem(STORE_KEY);
  if (saved) {
    try {
      const { key, token } = JSON.parse(saved);
      signIn(key, token).then((info) => {
        session = { key, token };
        showSignedIn(info);
        open('/');
      }, (e) => endSession(e.message));
    } catch (e) {
      endSession();
    }
  }
}

document.addEventListener('DOMContentLoaded', start);
