// The REST API as the page uses it. The key lives in this tab's session storage and travels as a
// bearer header; the page sends no cookies (credentials: "omit").

const KEY = "rag.apiKey";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {{message?:string, type?:string, code?:string, param?:string}} body OpenAI's error object
   */
  constructor(status, body = {}) {
    super(body.message || `request failed with status ${status}`);
    this.status = status;
    this.code = body.code || null;
    this.type = body.type || null;
    this.param = body.param || null;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

/** Called with the error when the server asks for a key (401); set by the app. */
export const hooks = { unauthorized: null };

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const k = key.get();
  if (k) h.Authorization = `Bearer ${k}`;
  return h;
}

async function failure(response) {
  let body = {};
  try {
    body = (await response.json()).error || {};
  } catch {
    body = { message: `${response.status} ${response.statusText}` };
  }
  const error = new ApiError(response.status, body);
  if (response.status === 401 && hooks.unauthorized) hooks.unauthorized(error);
  return error;
}

/**
 * One JSON request.
 * @param {string} method
 * @param {string} path
 * @param {{json?: *, form?: FormData}} [body]
 * @returns {Promise<*>} the parsed JSON body
 */
export async function request(method, path, body = {}) {
  const init = { method, headers: headers(), credentials: "omit", cache: "no-store" };
  if (body.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body.json);
  } else if (body.form !== undefined) {
    init.body = body.form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { message: `the server could not be reached (${err.message})` });
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * POST a JSON body and read the reply as server-sent events.
 * @param {string} path
 * @param {*} json
 * @param {(event: string, data: *) => void} onEvent called for each event, in order
 * @param {AbortSignal} [signal]
 */
export async function stream(path, json, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(json),
      credentials: "omit",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    throw new ApiError(0, { message: `the server could not be reached (${err.message})` });
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}
