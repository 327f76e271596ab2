// Calls the HTTP/JSON API (docs/api.md): POST /api/v1/<service>/<Method> with canonical proto
// JSON; errors are {"code", "message"}; server streams come as JSON lines.

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// The bearer token (when the server wants one) is kept for the browser session only.
export function token() {
  return sessionStorage.getItem('mlops.token') || '';
}
export function setToken(value) {
  if (value)
    sessionStorage.setItem('mlops.token', value);
  else
    sessionStorage.removeItem('mlops.token');
}

// The project every call names (Mlops-Project; empty: the server's default): the page's
// `project` query parameter (docs/ui.md).
export function project() {
  return new URLSearchParams(location.search).get('project') || '';
}

function headers(explicitProject) {
  const h = {'Content-Type': 'application/json'};
  if (token()) h['Authorization'] = 'Bearer ' + token();
  const p = explicitProject || project();
  if (p) h['Mlops-Project'] = p;
  return h;
}

async function errorOf(response) {
  let code = 'UNKNOWN', message = response.statusText;
  try {
    const body = await response.json();
    code = body.code || code;
    message = body.message || message;
  } catch (e) { /* not JSON */
  }
  return new ApiError(code, message, response.status);
}

// POSTs the request to its route; the response once its status says it succeeded.
async function post(service, method, request, options) {
  const response = await fetch(`/api/v1/${service}/${method}`, {
    method: 'POST',
    headers: headers(options.project),
    body: JSON.stringify(request),
    signal: options.signal,
  });
  if (!response.ok) throw await errorOf(response);
  return response;
}

// One unary call; resolves to the response message as a plain object.
export async function call(service, method, request = {}, options = {}) {
  return (await post(service, method, request, options)).json();
}

// A server stream: calls onMessage for each message as it arrives; resolves when the stream ends.
// (EventSource can only GET, so the stream is read with fetch as JSON lines.)
export async function stream(service, method, request, onMessage, options = {}) {
  const response = await post(service, method, request, options);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error) throw new ApiError(message.error.code, message.error.message, 200);
      onMessage(message);
    }
  }
}

// Every page of a List/Search call, `field` being the repeated field; stops after `limit` items.
export async function all(service, method, request, field, limit = 100000, options = {}) {
  const items = [];
  let pageToken = '';
  do {
    const response = await call(service, method, {...request, pageToken}, options);
    items.push(...(response[field] || []));
    pageToken = response.nextPageToken || '';
  } while (pageToken && items.length < limit);
  return items;
}
