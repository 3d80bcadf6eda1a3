/**
 * "Run with scriptrun…" and "Schedule with scriptrun…": a dialog with the form the
 * script's schema asks for. The server checks it as every front end's request is checked;
 * on a problem the dialog comes back with what was typed and each problem beside its
 * field, and nothing is queued.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Contents } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { api, ApiError, IFieldError, IRun, IScript, ISchedule } from './api';
import { ParameterForm } from './form';
import { el } from './dom';
import {
  asText,
  changed,
  formFields,
  IField,
  languageOf,
  optionFields,
  readForm,
  RUN_OPTIONS,
  SCHEDULE_OWN,
  scheduleOptionFields,
  scheduleValues,
  stemName,
  timingOf
} from './model';

/** What a run dialog runs: a registered script, or a file's text ad hoc. */
export interface ITarget {
  script: IScript | null;
  /** For an ad-hoc run: its name, language and text. */
  adhoc?: { name: string; language: string; source: string; path: string };
}

/** The target a file of the file browser stands for. */
export async function targetOfFile(contents: Contents.IManager, path: string): Promise<ITarget> {
  const script = await api.scriptFor(path);
  if (script) {
    return { script };
  }
  const language = languageOf(path);
  if (!language) {
    throw new ApiError(400, `${path} is not a script scriptrun can run (.py, .sh, .ipynb …)`);
  }
  const model = await contents.get(path, { content: true });
  const source =
    typeof model.content === 'string' ? model.content : JSON.stringify(model.content);
  return { script: null, adhoc: { name: stemName(path), language, source, path } };
}

/** The fields of an ad-hoc run: its parameters as one JSON object. */
const ADHOC_FIELDS: IField[] = [
  {
    name: 'parameters',
    kind: 'json',
    label: 'parameters',
    description: 'a JSON object, e.g. {"rows": 10} (the script reads SCRIPT_PARAMETERS)',
    required: false,
    choices: [],
    initial: '{}',
    schema: {}
  }
];

function fieldsOf(target: ITarget, values: { [name: string]: unknown }): IField[] {
  if (target.script) {
    return formFields(target.script.parameters, values);
  }
  return ADHOC_FIELDS.map(f => ({ ...f, initial: asText(values, 'json') || '{}' }));
}

function introOf(target: ITarget, verb: string): [string, string] {
  if (target.script) {
    return [`${verb} ${target.script.name}: ${target.script.description || 'no description'}`, ''];
  }
  const a = target.adhoc!;
  return [
    `${verb} ${a.path}`,
    `${a.path} is not in the scripts path: it runs as an ad-hoc script named ${a.name} (its text is sent with the run).`
  ];
}

function paramsOf(target: ITarget, read: { [name: string]: unknown }): { [name: string]: unknown } {
  if (target.script) {
    return read;
  }
  return (read.parameters as { [name: string]: unknown }) ?? {};
}

/** Errors about ``parameters.x`` or a parameter's name, as the form's fields name them. */
function forForm(target: ITarget, errors: IFieldError[], message: string): IFieldError[] {
  if (!errors.length) {
    return [{ field: null, message }];
  }
  return errors.map(e => ({
    field:
      target.script || RUN_OPTIONS.includes(e.field ?? '')
        ? (e.field ?? '').replace(/^parameters\./, '') || null
        : 'parameters',
    message: e.message
  }));
}

/** A request's own options (those the server declares) folded under "More options";
 * it opens by itself when one is set or has a problem. */
class MoreOptions {
  readonly node = el('details', 'jp-scriptrun-more');
  readonly form: ParameterForm;

  constructor(readonly fields: IField[]) {
    this.node.appendChild(el('summary', '', 'More options'));
    this.form = new ParameterForm(fields, 'Left empty, an option keeps its default.');
    this.node.appendChild(this.form.node);
    this.node.hidden = !fields.length;
    this.node.open = fields.some(f => f.initial !== '');
  }

  has(field: string | null): boolean {
    return Boolean(field) && this.fields.some(f => f.name === field);
  }

  /** Show its fields' problems (the others are the caller's). */
  showErrors(errors: IFieldError[]): void {
    this.form.showErrors(errors);
    if (errors.length) {
      this.node.open = true;
    }
  }
}

/** The run dialog's body: the parameters, and the run's own options under "More
 * options" (time limit, queue, notifications). */
class RunForm extends Widget {
  readonly params: ParameterForm;
  readonly more: MoreOptions;

  constructor(fields: IField[], options: IField[], intro: string, note: string) {
    super();
    this.addClass('jp-scriptrun-form');
    this.params = new ParameterForm(fields, intro, note);
    this.more = new MoreOptions(options);
    this.node.append(this.params.node, this.more.node);
  }

  showErrors(errors: IFieldError[]): void {
    // A parameter of the same name as an option (a script's own "timeout") wins.
    const params = new Set(this.params.fields.map(f => f.name));
    const theirs = errors.filter(e => this.more.has(e.field) && !params.has(e.field!));
    this.params.showErrors(errors.filter(e => !theirs.includes(e)));
    this.more.showErrors(theirs);
  }

  /** A selector of the first field with a problem, else of the first field. */
  firstProblem(errors: IFieldError[]): string {
    const names = new Set([...this.params.fields, ...this.more.fields].map(f => f.name));
    const first = errors.find(e => e.field && names.has(e.field));
    return first ? `[name="${CSS.escape(first.field!)}"]` : 'input, select';
  }
}

/** Show the run dialog until the run is queued (its record) or the user cancels (null). */
export async function runDialog(
  target: ITarget,
  values: { [name: string]: unknown } = {}
): Promise<IRun | null> {
  const fields = fieldsOf(target, values);
  // Only parameters when the server's document cannot be read: the run still works.
  const options = optionFields(
    await api.runOptions().catch(() => ({})),
    {},
    name => RUN_OPTIONS.includes(name)
  );
  const [intro, note] = introOf(target, 'Run');
  let texts: { [name: string]: string } | null = null;
  let more: { [name: string]: string } | null = null;
  let errors: IFieldError[] = [];
  for (;;) {
    const form = new RunForm(fields, options, intro, note);
    if (texts && more) {
      form.params.setTexts(texts);
      form.more.form.setTexts(more);
    }
    form.showErrors(errors);
    const result = await showDialog({
      title: target.script ? `Run ${target.script.name}` : 'Run ad hoc',
      body: form,
      focusNodeSelector: form.firstProblem(errors),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
    });
    texts = form.params.texts();
    more = form.more.form.texts();
    if (!result.button.accept) {
      return null;
    }
    const { params: read, problems } = readForm(fields, texts);
    const extra = readForm(options, more);
    errors = Object.entries({ ...problems, ...extra.problems }).map(([field, message]) => ({ field, message }));
    if (errors.length) {
      continue;
    }
    try {
      const body: Record<string, unknown> = {
        parameters: paramsOf(target, read),
        page_context: 'jupyterlab',
        ...extra.params
      };
      if (target.script) {
        body.script = target.script.name;
      } else {
        Object.assign(body, {
          source: target.adhoc!.source,
          language: target.adhoc!.language,
          name: target.adhoc!.name
        });
      }
      return await api.submit(body);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        errors = forForm(target, error.errors, error.message);
        continue;
      }
      await showDialog({
        title: 'The run was not queued',
        body: String((error as Error).message),
        buttons: [Dialog.okButton()]
      });
      return null;
    }
  }
}

/** The schedule part of the dialog: the timing (every, cron or once), a zone, a name,
 * and under "More options" every other option the server declares. */
class ScheduleForm extends Widget {
  readonly params: ParameterForm;
  readonly more: MoreOptions;
  readonly kind: HTMLSelectElement;
  readonly when: HTMLInputElement;
  readonly zone: HTMLInputElement;
  readonly name: HTMLInputElement;
  readonly problems: HTMLElement;
  private messages = new Map<string, HTMLElement>();

  constructor(
    target: ITarget,
    parameters: { [name: string]: unknown },
    options: IField[],
    values: { [name: string]: unknown },
    verb: string
  ) {
    super();
    this.addClass('jp-scriptrun-form');
    const [intro] = introOf(target, verb);
    this.params = new ParameterForm(fieldsOf(target, parameters), intro);
    this.node.appendChild(this.params.node);
    const row = (label: string, control: HTMLElement, help: string, field: string) => {
      const div = el('div', 'jp-scriptrun-form-row');
      const l = el('label', '', label);
      control.id = `jp-scriptrun-schedule-${label.replace(/\W+/g, '-')}`;
      control.setAttribute('name', field);
      l.htmlFor = control.id;
      const h = el('div', 'jp-scriptrun-form-help', help);
      h.id = `${control.id}-help`;
      control.setAttribute('aria-describedby', h.id);
      const message = el('div', 'jp-scriptrun-form-error');
      message.setAttribute('role', 'alert');
      this.messages.set(field, message);
      div.append(l, control, h, message);
      this.node.appendChild(div);
    };
    const timing = timingOf(values);
    this.kind = el('select', 'jp-mod-styled');
    this.kind.append(
      new Option('every (an interval)', 'every'),
      new Option('cron (5 fields)', 'cron'),
      new Option('once, at a time', 'at')
    );
    this.kind.value = timing.kind;
    row('repeat', this.kind, '', 'kind');
    this.when = el('input', 'jp-mod-styled');
    this.when.value = timing.text;
    this.when.spellcheck = false;
    row('when', this.when, 'every: 30s, 5m, 1h, 1d; cron: "0 7 * * 1-5"; once: 2027-01-31T09:00', 'when');
    this.zone = el('input', 'jp-mod-styled');
    this.zone.value = String(values.timezone ?? (Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'));
    this.zone.spellcheck = false;
    row('timezone', this.zone, 'an IANA name, e.g. Europe/Berlin', 'timezone');
    this.name = el('input', 'jp-mod-styled');
    this.name.placeholder = 'optional';
    this.name.value = String(values.name ?? '');
    row('name', this.name, 'to find it again (default: made from the script)', 'name');
    this.more = new MoreOptions(options);
    this.node.appendChild(this.more.node);
    this.problems = el('ul', 'jp-scriptrun-form-errors');
    this.problems.setAttribute('role', 'alert');
    this.node.appendChild(this.problems);
  }

  /** A selector of the first field with a problem (the dialog opens on it), else of
   * the first field. */
  firstProblem(errors: IFieldError[]): string {
    for (const e of errors) {
      const name = controlOf(e.field);
      if (name && this.node.querySelector(`[name="${CSS.escape(name)}"]`)) {
        return `[name="${CSS.escape(name)}"]`;
      }
    }
    return 'input, select';
  }

  /** What the user typed, to show the form again as it was. */
  state(): IScheduleState {
    return {
      texts: this.params.texts(),
      more: this.more.form.texts(),
      kind: this.kind.value,
      when: this.when.value,
      zone: this.zone.value,
      name: this.name.value
    };
  }

  restore(state: IScheduleState): void {
    this.params.setTexts(state.texts);
    this.more.form.setTexts(state.more);
    this.kind.value = state.kind;
    this.when.value = state.when;
    this.zone.value = state.zone;
    this.name.value = state.name;
  }

  /** Each problem beside its field: a parameter's, an option's, the timing's (cron,
   * every or at), the zone's or the name's; the rest below. */
  showErrors(errors: IFieldError[]): void {
    this.params.showErrors(errors.filter(e => e.field && !SCHEDULE_OWN.includes(e.field) && !this.more.has(e.field)));
    this.more.showErrors(errors.filter(e => this.more.has(e.field)));
    this.problems.textContent = '';
    for (const message of this.messages.values()) {
      message.textContent = '';
    }
    for (const e of errors.filter(e => !e.field || SCHEDULE_OWN.includes(e.field))) {
      const beside = this.messages.get(controlOf(e.field) ?? '');
      if (beside) {
        beside.textContent = beside.textContent ? `${beside.textContent}; ${e.message}` : e.message;
      } else {
        this.problems.appendChild(el('li', '', e.message));
      }
    }
  }
}

/** The schedule form's control a problem's field is about: the timing's three names
 * share the "when" field. */
function controlOf(field: string | null): string | null {
  return field === 'cron' || field === 'every' || field === 'at' ? 'when' : field;
}

interface IScheduleState {
  texts: { [n: string]: string };
  more: { [n: string]: string };
  kind: string;
  when: string;
  zone: string;
  name: string;
}

/** ``every`` as the API takes it: a number of seconds, or the text (30s, 5m …). */
function timingValue(kind: string, text: string): unknown {
  const t = text.trim();
  return kind === 'every' && /^\d+(\.\d+)?$/.test(t) ? Number(t) : t;
}

/** Show the schedule dialog until the schedule is made or changed (it) or the user
 * cancels (null). With ``existing``, the dialog edits that schedule: it starts from its
 * definition and sends only what changed. */
export async function scheduleDialog(
  target: ITarget,
  existing: ISchedule | null = null
): Promise<ISchedule | null> {
  if (!target.script) {
    await showDialog({
      title: 'Only registered scripts can be scheduled',
      body: `${target.adhoc!.path} is not in the scripts path. Put it in a folder of SCRIPTRUN_SCRIPTS_PATH to schedule it (a schedule runs the script as it is on the workers).`,
      buttons: [Dialog.okButton()]
    });
    return null;
  }
  const values = existing ? scheduleValues(existing) : {};
  const parameters = (existing?.parameters as { [name: string]: unknown }) ?? {};
  const options = scheduleOptionFields(await api.scheduleOptions(), values);
  let before: IScheduleState | null = null; // an edit's starting point: the first form's
  let errors: IFieldError[] = [];
  let state: IScheduleState | null = null;
  for (;;) {
    const form = new ScheduleForm(target, parameters, options, values, existing ? 'Edit the schedule of' : 'Schedule');
    if (state) {
      form.restore(state);
    } else if (existing) {
      before = form.state();
    }
    form.showErrors(errors);
    const result = await showDialog({
      title: existing ? `Edit schedule ${existing.name}` : `Schedule ${target.script.name}`,
      body: form,
      focusNodeSelector: form.firstProblem(errors),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: existing ? 'Save' : 'Schedule' })]
    });
    state = form.state();
    if (!result.button.accept) {
      return null;
    }
    const read = readForm(form.params.fields, state.texts);
    const more = readForm(options, state.more);
    errors = Object.entries({ ...read.problems, ...more.problems }).map(([field, message]) => ({ field, message }));
    if (errors.length) {
      continue;
    }
    const body: Record<string, unknown> = {};
    if (!before) {
      Object.assign(body, {
        script: target.script.name,
        parameters: read.params,
        [state.kind]: timingValue(state.kind, state.when),
        timezone: state.zone.trim(),
        ...more.params
      });
      if (state.name.trim()) {
        body.name = state.name.trim();
      }
    } else {
      // An edit sends what changed, so that the server keeps everything else as it is.
      if (JSON.stringify(state.texts) !== JSON.stringify(before.texts)) {
        body.parameters = read.params;
      }
      if (state.kind !== before.kind || state.when.trim() !== before.when.trim()) {
        body[state.kind] = timingValue(state.kind, state.when);
      }
      if (state.zone.trim() !== before.zone.trim()) {
        body.timezone = state.zone.trim();
      }
      if (state.name.trim() && state.name.trim() !== before.name.trim()) {
        body.name = state.name.trim();
      }
      Object.assign(body, changed(options, state.more, more.params));
      if (!Object.keys(body).length) {
        return existing;
      }
    }
    try {
      return existing ? await api.editSchedule(existing.id, body) : await api.schedule(body);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        errors = error.errors.length ? error.errors : [{ field: null, message: error.message }];
        continue;
      }
      throw error;
    }
  }
}
