/**
 * What the views show, as plain functions of the API's data (no DOM, no JupyterLab):
 * the form a script's schema asks for, the values typed into it, the words for a run.
 * The unit tests (model.test.ts) hold these to the same rules as the other front ends.
 */
import type { IParamSchema, IParamsSchema, IRun } from './api';

export const FINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'lost']);
export const STATUSES = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'timed_out',
  'cancelled',
  'lost'
];

/** One field of a run form. */
export interface IField {
  name: string;
  kind: 'boolean' | 'integer' | 'number' | 'string' | 'choice' | 'json' | 'list';
  label: string;
  description: string;
  required: boolean;
  choices: string[];
  /** The text the field starts with (the default, as typed). */
  initial: string;
  schema: IParamSchema;
}

function typeOf(schema: IParamSchema): string | undefined {
  const t = schema.type;
  if (Array.isArray(t)) {
    return t.find(x => x !== 'null');
  }
  return t;
}

/** The default (or a given value) as the text a field shows. */
export function asText(value: unknown, kind: IField['kind']): string {
  if (value === undefined || value === null) {
    return '';
  }
  if (kind === 'list' && Array.isArray(value)) {
    return value.map(String).join(', ');
  }
  if (kind === 'json' || typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

/** The fields of a script's parameters, in the schema's order. */
export function formFields(
  schema: IParamsSchema | undefined,
  values: { [name: string]: unknown } = {}
): IField[] {
  const properties = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  return Object.entries(properties).map(([name, p]) => {
    const t = typeOf(p);
    let kind: IField['kind'];
    if (Array.isArray(p.enum) && p.enum.length) {
      kind = 'choice';
    } else if (t === 'boolean' || t === 'integer' || t === 'number' || t === 'string') {
      kind = t;
    } else if (t === undefined) {
      kind = 'string';
    } else {
      kind = 'json';
    }
    const value = name in values ? values[name] : p.default;
    return {
      name,
      kind,
      label: name,
      description: p.description ?? '',
      required: required.has(name) && p.default === undefined,
      choices: (p.enum ?? []).map(v => asText(v, 'string')),
      initial: asText(value, kind),
      schema: p
    };
  });
}

/** Read the form's texts into parameters: what parses, and what is wrong, per field.
 * Empty optional fields are left out (the script's default applies); the server then
 * checks ranges, patterns and unknown names, every problem at once. */
export function readForm(
  fields: IField[],
  texts: { [name: string]: string }
): { params: { [name: string]: unknown }; problems: { [name: string]: string } } {
  const params: { [name: string]: unknown } = {};
  const problems: { [name: string]: string } = {};
  for (const field of fields) {
    const text = (texts[field.name] ?? '').trim();
    if (text === '') {
      if (field.required) {
        problems[field.name] = `${field.name}: a value is required`;
      }
      continue;
    }
    switch (field.kind) {
      case 'boolean':
        if (text !== 'true' && text !== 'false') {
          problems[field.name] = `${field.name}: ${JSON.stringify(text)} is not true or false`;
        } else {
          params[field.name] = text === 'true';
        }
        break;
      case 'integer':
      case 'number': {
        const n = Number(text);
        if (!Number.isFinite(n) || (field.kind === 'integer' && !Number.isInteger(n))) {
          problems[field.name] =
            `${field.name}: ${JSON.stringify(text)} is not ${field.kind === 'integer' ? 'an integer' : 'a number'}`;
        } else {
          params[field.name] = n;
        }
        break;
      }
      case 'choice': {
        const index = field.choices.indexOf(text);
        params[field.name] = index >= 0 ? field.schema.enum![index] : text;
        break;
      }
      case 'list':
        params[field.name] = text
          .split(/[\n,]/)
          .map(x => x.trim())
          .filter(x => x);
        break;
      case 'json':
        try {
          params[field.name] = JSON.parse(text);
        } catch {
          problems[field.name] = `${field.name}: not valid JSON`;
        }
        break;
      default:
        params[field.name] = text;
    }
  }
  return { params, problems };
}

/** "2 running · 1 queued" (empty when nothing is active). */
export function activeSummary(runs: Pick<IRun, 'status'>[]): string {
  const running = runs.filter(r => r.status === 'running').length;
  const queued = runs.filter(r => r.status === 'queued').length;
  const parts = [];
  if (running) {
    parts.push(`${running} running`);
  }
  if (queued) {
    parts.push(`${queued} queued`);
  }
  return parts.join(' · ');
}

/** A duration as people read it: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** When, relative to now: "just now", "5 min ago", "3 h ago", else the date. */
export function formatWhen(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) {
    return '';
  }
  const then = new Date(iso);
  if (Number.isNaN(then.getTime())) {
    return '';
  }
  const s = (now.getTime() - then.getTime()) / 1000;
  if (s < 45) {
    return 'just now';
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h ago`;
  }
  return then.toLocaleString();
}

/** The words for a status ("timed_out" → "timed out"). */
export function statusLabel(status: string): string {
  return status.replace(/_/g, ' ');
}

/** Runs whose script, status, id or message contains ``text`` (case-insensitive). */
export function matches(run: IRun, text: string): boolean {
  const t = text.trim().toLowerCase();
  if (!t) {
    return true;
  }
  return [run.id, run.script, run.status, run.message ?? '']
    .join(' ')
    .toLowerCase()
    .includes(t);
}

/** The fraction done (0..1) of a run's progress, or null when it has no total. */
export function progressFraction(run: Pick<IRun, 'progress'>): number | null {
  const p = run.progress;
  if (!p || !p.total || p.total <= 0 || p.done === undefined) {
    return null;
  }
  return Math.max(0, Math.min(1, p.done / p.total));
}

/** How the run is submitted for a file of the file browser: as the registered script it
 * is, or ad hoc (its text sent with the run) in the language its extension names. */
export const LANGUAGE_BY_SUFFIX: { [suffix: string]: string } = {
  '.py': 'python',
  '.sh': 'bash',
  '.pl': 'perl',
  '.rb': 'ruby',
  '.js': 'node',
  '.r': 'r',
  '.ipynb': 'notebook'
};

export function languageOf(path: string): string | null {
  const dot = path.lastIndexOf('.');
  if (dot < 0) {
    return null;
  }
  return LANGUAGE_BY_SUFFIX[path.slice(dot).toLowerCase()] ?? null;
}

/** A file's stem as a script name ("reports/daily report.py" → "daily_report"). */
export function stemName(path: string): string {
  const base = path.split('/').pop() ?? path;
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  const cleaned = stem.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^[._-]+/, '');
  return cleaned || 'script';
}

/** Backoff for polling: quick while something runs, slower while idle, slowest when
 * the tab is hidden; doubles after each failure up to a minute. */
export function nextPollMs(active: boolean, hidden: boolean, failures: number): number {
  const base = hidden ? 15000 : active ? 1000 : 5000;
  return Math.min(60000, base * Math.pow(2, Math.min(failures, 6)));
}

/** Per script over the given runs: how many ran, how many failed, median and slowest
 * duration (seconds) of those that ended; most runs first. */
export function scriptFigures(
  runs: Pick<IRun, 'script' | 'status' | 'duration_s'>[]
): { script: string; runs: number; failed: number; median: number | null; slowest: number | null }[] {
  const by = new Map<string, Pick<IRun, 'script' | 'status' | 'duration_s'>[]>();
  for (const run of runs) {
    by.set(run.script, [...(by.get(run.script) ?? []), run]);
  }
  return [...by.entries()]
    .map(([script, list]) => {
      const times = list
        .map(r => r.duration_s)
        .filter((d): d is number => typeof d === 'number')
        .sort((a, b) => a - b);
      const mid = times.length >> 1;
      const median = !times.length ? null : times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
      return {
        script,
        runs: list.length,
        failed: list.filter(r => ['failed', 'timed_out', 'lost'].includes(r.status)).length,
        median,
        slowest: times.length ? times[times.length - 1] : null
      };
    })
    .sort((a, b) => b.runs - a.runs || a.script.localeCompare(b.script));
}

/** The schedule options a dialog asks for itself, above "More options". */
export const SCHEDULE_OWN = ['cron', 'every', 'at', 'timezone', 'name'];

/** The options a run dialog asks for under "More options" (of the run request's). */
export const RUN_OPTIONS = ['timeout', 'queue', 'notify', 'notify_on'];

/** The "More options" fields of a schedule, from the server's schema of a schedule
 * request (the options are declared once, on the server): every option but the timing,
 * the zone, the name, the script and its parameters. */
export function scheduleOptionFields(
  properties: { [name: string]: IParamSchema },
  values: { [name: string]: unknown } = {}
): IField[] {
  const skip = new Set([...SCHEDULE_OWN, 'script', 'parameters']);
  return optionFields(properties, values, name => !skip.has(name));
}

/** Fields for the request options of a schema (those ``keep`` keeps). A field starts
 * empty unless ``values`` gives it (an edit), so the server's default applies; the help
 * says it. */
export function optionFields(
  properties: { [name: string]: IParamSchema },
  values: { [name: string]: unknown },
  keep: (name: string) => boolean
): IField[] {
  return Object.entries(properties)
    .filter(([name]) => keep(name))
    .map(([name, p]) => {
      const list = typeOf(p) === 'array';
      const [field] = formFields({ properties: { [name]: { ...p, default: undefined } } }, values);
      const kind: IField['kind'] = list ? 'list' : field.kind;
      const itemChoices = p.items?.enum ? ` (of ${p.items.enum.join(', ')})` : '';
      const said = /\bdefault\b/.test(p.description ?? '');
      const fallback = p.default === undefined || said ? '' : `; default ${asText(p.default, kind)}`;
      const several = list && !p.items?.enum ? '; several: comma-separated' : '';
      const extra = p.format === 'date-time' ? ' (e.g. 2027-01-31T09:00)' : '';
      return {
        ...field,
        kind,
        label: name.replace(/_/g, ' '),
        description: `${(p.description ?? '').replace(/ \(repeatable\)$/, '')}${itemChoices}${fallback}${several}${extra}`,
        initial: name in values ? asText(values[name], kind) : ''
      };
    });
}

/** A schedule as the API shows it, in the words of a schedule request (``every_s`` is
 * ``every``, ``once_at`` is ``at`` …): what an edit starts from. */
export function scheduleValues(row: { [name: string]: unknown }): { [name: string]: unknown } {
  const words: { [column: string]: string } = {
    cron: 'cron',
    every_s: 'every',
    once_at: 'at',
    start_at: 'start',
    end_at: 'end',
    timezone: 'timezone',
    catchup: 'catchup',
    overlap: 'overlap',
    queue: 'queue',
    timeout_s: 'timeout',
    jitter_s: 'jitter',
    misfire_grace_s: 'misfire_grace',
    notify: 'notify',
    notify_on: 'notify_on',
    name: 'name'
  };
  const out: { [name: string]: unknown } = {};
  for (const [column, word] of Object.entries(words)) {
    const value = row[column];
    if (value !== null && value !== undefined && !(Array.isArray(value) && !value.length)) {
      out[word] = value;
    }
  }
  return out;
}

/** The timing a schedule has: which of cron, every and at, and its text. */
export function timingOf(values: { [name: string]: unknown }): { kind: string; text: string } {
  for (const kind of ['cron', 'every', 'at']) {
    if (values[kind] !== undefined && values[kind] !== null) {
      return { kind, text: String(values[kind]) };
    }
  }
  return { kind: 'every', text: '1h' };
}

/** Only what an edit changes: the values whose text differs from what the form
 * started with (an unchanged form changes nothing); a field emptied is null, which
 * puts the option back to its default. */
export function changed(
  fields: IField[],
  texts: { [name: string]: string },
  read: { [name: string]: unknown }
): { [name: string]: unknown } {
  const out: { [name: string]: unknown } = {};
  for (const field of fields) {
    const text = (texts[field.name] ?? '').trim();
    if (text === field.initial.trim()) {
      continue;
    }
    out[field.name] = text === '' ? null : read[field.name];
  }
  return out;
}
