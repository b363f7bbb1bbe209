// The API from the page: same origin, the session cookie (HttpOnly) goes
// with every request; the page never sees or keeps a token.

/** An answer other than 2xx: `status`, and the server's error `code`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || String(status));
    this.status = status;
    this.code = code;
  }
}

/** `method path` with an optional JSON body; the JSON answer (or null). */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) throw new ApiError(r.status, json && json.error, json && json.message);
  return json;
}
