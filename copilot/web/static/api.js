// Same-origin JSON/SSE requests with the session cookie and the page's CSRF token. A 401 means
// the session ended: the page goes to the sign-in form (which comes back here after login).

export class SignedOut extends Error {}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

export async function request(path, { method = "GET", json, accept = "application/json", signal } = {}) {
  const headers = { Accept: accept };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(path, {
    method, headers, signal, credentials: "same-origin", cache: "no-store",
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  if (response.status === 401) {
    window.location.assign(document.body.dataset.loginUrl || "/login");
    throw new SignedOut("your session has ended");
  }
  return response;
}

// The server's {"error": ...} message, or the status line when the body is not JSON.
export async function errorFrom(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText || "error"}`;
}
