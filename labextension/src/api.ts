/**
 * The REST API at /scriptrun/api/, through JupyterLab's ServerConnection (its token and
 * XSRF cookie come for free). The only way the extension reaches the product.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API = 'scriptrun/api';

/** A script as GET /scripts gives it. */
export interface IScript {
  id: number | null;
  name: string;
  path: string;
  description: string;
  /** The parameters' JSON Schema. */
  parameters: IParamsSchema;
  [key: string]: unknown;
}

/** A JSON Schema object of parameters (the subset scripts declare). */
export interface IParamsSchema {
  type?: string;
  properties?: { [name: string]: IParamSchema };
  required?: string[];
  additionalProperties?: boolean;
}

export interface IParamSchema {
  type?: string | string[];
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  description?: string;
  format?: string;
  items?: IParamSchema;
}

/** A run as GET /executions and GET /executions/{id} give it (the record's columns). */
export interface IRun {
  id: string;
  script: string;
  status: string;
  parameters?: { [name: string]: unknown };
  page_context?: string;
  queued_at?: string | null;
  created_at?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
  duration_s?: number | null;
  exit_code?: number | null;
  message?: string | null;
  data?: unknown;
  error_type?: string | null;
  traceback?: string | null;
  stdout?: string | null;
  stderr?: string | null;
  progress?: { done?: number; total?: number | null; message?: string | null } | null;
  attempt?: number | null;
  peak_rss_mb?: number | null;
  cpu_user_s?: number | null;
  cpu_system_s?: number | null;
  worker?: string | null;
  files?: number | null;
  [key: string]: unknown;
}

export interface IRunFile {
  name: string;
  size: number;
  media_type: string;
  sha256?: string | null;
  note?: string | null;
}

/** A page of live output: chunks from an offset on, and where the next page starts. */
export interface ILogPage {
  attempt: number | null;
  chunks: { seq: number; stream: string; text: string }[];
  next_offset: number;
  done: boolean;
  status: string;
}

export interface ISchedule {
  id: string;
  name: string;
  script: string;
  state: string;
  [key: string]: unknown;
}

/** One problem the server found, with the field it is about (null: the request). */
export interface IFieldError {
  field: string | null;
  message: string;
}

/** A refused request: the server's message, and each problem with its field. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: IFieldError[] = []
  ) {
    super(message);
  }
}

function settings(): ServerConnection.ISettings {
  return ServerConnection.makeSettings();
}

/** The URL of an API path (for links: downloads, images). */
export function apiUrl(path: string, query: Record<string, string> = {}): string {
  const s = settings();
  const base = URLExt.join(s.baseUrl, API, path);
  const params = new URLSearchParams(query).toString();
  return params ? `${base}?${params}` : base;
}

/** Call the API; the parsed JSON answer, or an ApiError naming what was wrong. */
export async function request<T>(
  path: string,
  init: RequestInit = {},
  query: Record<string, string | string[]> = {}
): Promise<T> {
  const s = settings();
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      search.append(key, one);
    }
  }
  const qs = search.toString();
  const url = URLExt.join(s.baseUrl, API, path) + (qs ? `?${qs}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, s);
  } catch (error) {
    throw new ApiError(0, `the Jupyter server cannot be reached (${String(error)})`);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message =
      (body && typeof body.message === 'string' && body.message) ||
      `${response.status} ${response.statusText}`;
    const errors: IFieldError[] = Array.isArray(body?.errors) ? body.errors : [];
    throw new ApiError(response.status, message, errors);
  }
  return body as T;
}

export interface IRunQuery {
  script?: string[];
  status?: string[];
  limit?: number;
  offset?: number;
}

export const api = {
  scripts: () => request<IScript[]>('scripts'),
  scriptFor: async (path: string): Promise<IScript | null> => {
    const found = await request<IScript[]>('scripts', {}, { path });
    return found.length ? found[0] : null;
  },
  runs: (q: IRunQuery = {}) => {
    const query: Record<string, string | string[]> = {};
    if (q.script?.length) {
      query.script = q.script;
    }
    if (q.status?.length) {
      query.status = q.status;
    }
    query.limit = String(q.limit ?? 50);
    query.offset = String(q.offset ?? 0);
    return request<IRun[]>('executions', {}, query);
  },
  run: (id: string) => request<IRun>(`executions/${encodeURIComponent(id)}`),
  logs: (id: string) =>
    request<{ stdout: string; stderr: string }>(`executions/${encodeURIComponent(id)}/logs`),
  /** The output that arrived from chunk ``offset`` on (of the latest attempt). */
  logsFrom: (id: string, offset: number) =>
    request<ILogPage>(`executions/${encodeURIComponent(id)}/logs`, {}, { offset: String(offset) }),
  files: (id: string) => request<IRunFile[]>(`executions/${encodeURIComponent(id)}/files`),
  submit: (body: Record<string, unknown>) =>
    request<IRun>('executions', { method: 'POST', body: JSON.stringify(body) }),
  cancel: (id: string) =>
    request<IRun>(`executions/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
  schedules: () => request<ISchedule[]>('schedules'),
  schedule: (body: Record<string, unknown>) =>
    request<ISchedule>('schedules', { method: 'POST', body: JSON.stringify(body) }),
  editSchedule: (id: string, body: Record<string, unknown>) =>
    request<ISchedule>(`schedules/${encodeURIComponent(id)}`, {
      method: 'PATCH',
      body: JSON.stringify(body)
    }),
  runScheduleNow: (id: string) =>
    request<IRun>(`schedules/${encodeURIComponent(id)}/run`, { method: 'POST' }),
  deleteSchedule: (id: string) =>
    request<null>(`schedules/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  attempts: (id: string) =>
    request<Record<string, unknown>[]>(`executions/${encodeURIComponent(id)}/attempts`),
  workers: () => request<Record<string, unknown>[]>('workers'),
  /** The schedule options a request may give (declared once, on the server). */
  scheduleOptions: () => requestProperties('ScheduleRequest'),
  /** The members of a run request (timeout, queue, notify …). */
  runOptions: () => requestProperties('SubmitRequest')
};

let openapi: Promise<any> | null = null;

/** A request body's properties, from the server's OpenAPI document (read once a page). */
async function requestProperties(schema: string): Promise<{ [name: string]: IParamSchema }> {
  openapi = openapi ?? request<any>('openapi.json');
  try {
    return (await openapi)?.components?.schemas?.[schema]?.properties ?? {};
  } catch (error) {
    openapi = null; // read again next time
    throw error;
  }
}
