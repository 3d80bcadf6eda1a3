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
import { asText, formFields, IField, languageOf, readForm, stemName } from './model';

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
    field: target.script ? (e.field ?? '').replace(/^parameters\./, '') || null : 'parameters',
    message: e.message
  }));
}

/** Show the run dialog until the run is queued (its record) or the user cancels (null). */
export async function runDialog(
  target: ITarget,
  values: { [name: string]: unknown } = {}
): Promise<IRun | null> {
  const fields = fieldsOf(target, values);
  const [intro, note] = introOf(target, 'Run');
  let texts: { [name: string]: string } | null = null;
  let errors: IFieldError[] = [];
  for (;;) {
    const form = new ParameterForm(fields, intro, note);
    if (texts) {
      form.setTexts(texts);
    }
    form.showErrors(errors);
    const result = await showDialog({
      title: target.script ? `Run ${target.script.name}` : 'Run ad hoc',
      body: form,
      // The first field with a problem, else the first field.
      focusNodeSelector: errors.some(e => fields.some(f => f.name === e.field))
        ? `[name="${errors.find(e => fields.some(f => f.name === e.field))!.field}"]`
        : 'input, select',
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
    });
    texts = form.texts();
    if (!result.button.accept) {
      return null;
    }
    const { params: read, problems } = readForm(fields, texts);
    errors = Object.entries(problems).map(([field, message]) => ({ field, message }));
    if (errors.length) {
      continue;
    }
    try {
      const body: Record<string, unknown> = { parameters: paramsOf(target, read), page_context: 'jupyterlab' };
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

/** The schedule part of the dialog: every or cron, a zone, a name. */
class ScheduleForm extends Widget {
  readonly params: ParameterForm;
  readonly kind: HTMLSelectElement;
  readonly when: HTMLInputElement;
  readonly zone: HTMLInputElement;
  readonly name: HTMLInputElement;
  readonly problems: HTMLElement;

  constructor(target: ITarget, values: { [name: string]: unknown }) {
    super();
    this.addClass('jp-scriptrun-form');
    const [intro] = introOf(target, 'Schedule');
    this.params = new ParameterForm(fieldsOf(target, values), intro);
    this.node.appendChild(this.params.node);
    const row = (label: string, control: HTMLElement, help: string) => {
      const div = document.createElement('div');
      div.className = 'jp-scriptrun-form-row';
      const l = document.createElement('label');
      l.textContent = label;
      control.id = `jp-scriptrun-schedule-${label.replace(/\W+/g, '-')}`;
      l.htmlFor = control.id;
      const h = document.createElement('div');
      h.className = 'jp-scriptrun-form-help';
      h.textContent = help;
      div.append(l, control, h);
      this.node.appendChild(div);
    };
    this.kind = document.createElement('select');
    this.kind.className = 'jp-mod-styled';
    this.kind.append(new Option('every (an interval)', 'every'), new Option('cron (5 fields)', 'cron'));
    row('repeat', this.kind, '');
    this.when = document.createElement('input');
    this.when.className = 'jp-mod-styled';
    this.when.value = '1h';
    row('when', this.when, 'every: 30s, 5m, 1h, 1d; cron: "0 7 * * 1-5"');
    this.zone = document.createElement('input');
    this.zone.className = 'jp-mod-styled';
    this.zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    row('timezone', this.zone, 'an IANA name, e.g. Europe/Berlin');
    this.name = document.createElement('input');
    this.name.className = 'jp-mod-styled';
    this.name.placeholder = 'optional';
    row('name', this.name, 'to find it again (default: made from the script)');
    this.problems = document.createElement('ul');
    this.problems.className = 'jp-scriptrun-form-errors';
    this.problems.setAttribute('role', 'alert');
    this.node.appendChild(this.problems);
  }

  showErrors(errors: IFieldError[]): void {
    const own = new Set(['every', 'cron', 'timezone', 'name']);
    this.params.showErrors(errors.filter(e => !own.has(e.field ?? '') && e.field !== null));
    this.problems.textContent = '';
    for (const e of errors.filter(e => own.has(e.field ?? '') || e.field === null)) {
      const li = document.createElement('li');
      li.textContent = e.message;
      this.problems.appendChild(li);
    }
  }
}

/** Show the schedule dialog until the schedule is made (it) or the user cancels (null). */
export async function scheduleDialog(target: ITarget): Promise<ISchedule | null> {
  if (!target.script) {
    await showDialog({
      title: 'Only registered scripts can be scheduled',
      body: `${target.adhoc!.path} is not in the scripts path. Put it in a folder of SCRIPTRUN_SCRIPTS_PATH to schedule it (a schedule runs the script as it is on the workers).`,
      buttons: [Dialog.okButton()]
    });
    return null;
  }
  let errors: IFieldError[] = [];
  let state: { texts: { [n: string]: string }; kind: string; when: string; zone: string; name: string } | null = null;
  for (;;) {
    const form = new ScheduleForm(target, {});
    if (state) {
      form.params.setTexts(state.texts);
      form.kind.value = state.kind;
      form.when.value = state.when;
      form.zone.value = state.zone;
      form.name.value = state.name;
    }
    form.showErrors(errors);
    const result = await showDialog({
      title: `Schedule ${target.script.name}`,
      body: form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Schedule' })]
    });
    state = {
      texts: form.params.texts(),
      kind: form.kind.value,
      when: form.when.value,
      zone: form.zone.value,
      name: form.name.value
    };
    if (!result.button.accept) {
      return null;
    }
    const { params, problems } = readForm(form.params.fields, state.texts);
    errors = Object.entries(problems).map(([field, message]) => ({ field, message }));
    if (errors.length) {
      continue;
    }
    const body: Record<string, unknown> = {
      script: target.script.name,
      parameters: params,
      [state.kind]: state.kind === 'every' && /^\d+(\.\d+)?$/.test(state.when.trim()) ? Number(state.when) : state.when.trim(),
      timezone: state.zone.trim()
    };
    if (state.name.trim()) {
      body.name = state.name.trim();
    }
    try {
      return await api.schedule(body);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        errors = error.errors.length ? error.errors : [{ field: null, message: error.message }];
        continue;
      }
      throw error;
    }
  }
}
