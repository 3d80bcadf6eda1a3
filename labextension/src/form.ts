/**
 * A run's form, generated from the script's parameter schema: one labelled control per
 * parameter, the default filled in, every problem shown beside its field at once.
 */
import { Widget } from '@lumino/widgets';

import type { IFieldError } from './api';
import { IField } from './model';

let counter = 0;

export class ParameterForm extends Widget {
  private controls = new Map<string, HTMLInputElement | HTMLSelectElement>();
  private messages = new Map<string, HTMLElement>();
  private general: HTMLElement;

  constructor(
    readonly fields: IField[],
    intro: string,
    note = ''
  ) {
    super();
    this.addClass('jp-scriptrun-form');
    const id = `jp-scriptrun-form-${++counter}`;
    const head = document.createElement('p');
    head.className = 'jp-scriptrun-form-intro';
    head.textContent = intro;
    this.node.appendChild(head);
    if (note) {
      const p = document.createElement('p');
      p.className = 'jp-scriptrun-form-note';
      p.textContent = note;
      this.node.appendChild(p);
    }
    if (!fields.length) {
      const none = document.createElement('p');
      none.className = 'jp-scriptrun-muted';
      none.textContent = 'This script takes no parameters.';
      this.node.appendChild(none);
    }
    for (const field of fields) {
      const row = document.createElement('div');
      row.className = 'jp-scriptrun-form-row';
      const label = document.createElement('label');
      const controlId = `${id}-${field.name}`;
      label.htmlFor = controlId;
      label.textContent = field.required ? `${field.label} *` : field.label;
      row.appendChild(label);
      let control: HTMLInputElement | HTMLSelectElement;
      if (field.kind === 'choice' || field.kind === 'boolean') {
        const select = document.createElement('select');
        const choices = field.kind === 'boolean' ? ['true', 'false'] : field.choices;
        if (!field.initial) {
          select.appendChild(new Option('', ''));
        }
        for (const choice of choices) {
          select.appendChild(new Option(choice, choice));
        }
        select.value = field.initial;
        control = select;
      } else {
        const input = document.createElement('input');
        input.type = 'text';
        input.value = field.initial;
        input.spellcheck = false;
        if (field.kind === 'integer' || field.kind === 'number') {
          input.inputMode = field.kind === 'integer' ? 'numeric' : 'decimal';
        }
        input.placeholder = field.kind === 'json' ? 'JSON' : '';
        control = input;
      }
      control.id = controlId;
      control.name = field.name;
      control.className = 'jp-mod-styled';
      control.setAttribute('aria-describedby', `${controlId}-help`);
      row.appendChild(control);
      const help = document.createElement('div');
      help.id = `${controlId}-help`;
      help.className = 'jp-scriptrun-form-help';
      help.textContent = field.description;
      row.appendChild(help);
      const message = document.createElement('div');
      message.className = 'jp-scriptrun-form-error';
      message.setAttribute('role', 'alert');
      row.appendChild(message);
      this.node.appendChild(row);
      this.controls.set(field.name, control);
      this.messages.set(field.name, message);
    }
    this.general = document.createElement('ul');
    this.general.className = 'jp-scriptrun-form-errors';
    this.general.setAttribute('role', 'alert');
    this.node.appendChild(this.general);
  }

  /** The texts typed, by parameter. */
  texts(): { [name: string]: string } {
    const out: { [name: string]: string } = {};
    for (const [name, control] of this.controls) {
      out[name] = control.value;
    }
    return out;
  }

  /** Set the texts (a form shown again keeps what was typed). */
  setTexts(texts: { [name: string]: string }): void {
    for (const [name, text] of Object.entries(texts)) {
      const control = this.controls.get(name);
      if (control) {
        control.value = text;
      }
    }
  }

  /** Show every problem: beside its field when it names one of the form's, else below. */
  showErrors(errors: IFieldError[]): void {
    for (const message of this.messages.values()) {
      message.textContent = '';
    }
    for (const control of this.controls.values()) {
      control.removeAttribute('aria-invalid');
    }
    this.general.textContent = '';
    for (const error of errors) {
      const name = error.field ?? '';
      const message = this.messages.get(name);
      if (message) {
        message.textContent = message.textContent
          ? `${message.textContent}; ${error.message}`
          : error.message;
        this.controls.get(name)!.setAttribute('aria-invalid', 'true');
      } else {
        const item = document.createElement('li');
        item.textContent = error.message;
        this.general.appendChild(item);
      }
    }
    const first = errors.find(e => e.field && this.controls.has(e.field));
    if (first) {
      this.controls.get(first.field!)!.focus();
    }
  }

  /** Focus the first control (a dialog opens on it). */
  focusFirst(): void {
    const first = this.controls.values().next().value;
    first?.focus();
  }
}
