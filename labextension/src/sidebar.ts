/**
 * The "Script runs" sidebar: the live list of runs, newest first, filtered by script,
 * status and text, a page at a time; a click opens the run in a main-area tab.
 */
import { Widget } from '@lumino/widgets';

import { api, IRun } from './api';
import {
  activeSummary,
  formatDuration,
  formatWhen,
  matches,
  progressFraction,
  statusLabel,
  STATUSES
} from './model';
import { RunsModel } from './runs';

const PAGE = 50;

export interface ISidebarActions {
  openRun(id: string): void;
  openSchedules(): void;
  openFleet(): void;
  openCatalogue(): void;
}

/** A status chip: the status in words, coloured by its class. */
export function statusChip(status: string): HTMLElement {
  const chip = document.createElement('span');
  chip.className = `jp-scriptrun-chip jp-scriptrun-chip-${status}`;
  chip.textContent = statusLabel(status);
  return chip;
}

/** A progress bar (a fraction 0..1, or null for one that only moves). */
export function progressBar(fraction: number | null, label: string): HTMLElement {
  const bar = document.createElement('div');
  bar.className = 'jp-scriptrun-progress';
  bar.setAttribute('role', 'progressbar');
  bar.setAttribute('aria-label', label);
  const fill = document.createElement('div');
  fill.className = 'jp-scriptrun-progress-fill';
  if (fraction === null) {
    bar.classList.add('jp-scriptrun-progress-unknown');
  } else {
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    bar.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
    fill.style.width = `${Math.round(fraction * 100)}%`;
  }
  bar.appendChild(fill);
  return bar;
}

export class RunsSidebar extends Widget {
  private list: HTMLElement;
  private summary: HTMLElement;
  private more: HTMLButtonElement;
  private text: HTMLInputElement;
  private status: HTMLSelectElement;
  private script: HTMLSelectElement;

  constructor(
    private model: RunsModel,
    private actions: ISidebarActions
  ) {
    super();
    this.id = 'scriptrun-runs';
    this.addClass('jp-scriptrun-sidebar');
    this.title.caption = 'Script runs';

    const header = document.createElement('div');
    header.className = 'jp-scriptrun-sidebar-header';
    const title = document.createElement('h2');
    title.textContent = 'Script runs';
    header.appendChild(title);
    const links = document.createElement('div');
    links.className = 'jp-scriptrun-links';
    for (const [label, action] of [
      ['Scripts', () => this.actions.openCatalogue()],
      ['Schedules', () => this.actions.openSchedules()],
      ['Fleet', () => this.actions.openFleet()]
    ] as [string, () => void][]) {
      const button = document.createElement('button');
      button.className = 'jp-Button jp-mod-styled jp-mod-minimal';
      button.textContent = label;
      button.addEventListener('click', action);
      links.appendChild(button);
    }
    header.appendChild(links);
    this.node.appendChild(header);

    const filters = document.createElement('div');
    filters.className = 'jp-scriptrun-filters';
    this.text = document.createElement('input');
    this.text.type = 'search';
    this.text.placeholder = 'Filter: id, script, message';
    this.text.setAttribute('aria-label', 'Filter runs by text');
    this.text.className = 'jp-mod-styled';
    this.text.addEventListener('input', () => this.render());
    this.script = document.createElement('select');
    this.script.className = 'jp-mod-styled';
    this.script.setAttribute('aria-label', 'Filter runs by script');
    this.script.appendChild(new Option('all scripts', ''));
    this.status = document.createElement('select');
    this.status.className = 'jp-mod-styled';
    this.status.setAttribute('aria-label', 'Filter runs by status');
    this.status.appendChild(new Option('any status', ''));
    for (const status of STATUSES) {
      this.status.appendChild(new Option(statusLabel(status), status));
    }
    for (const select of [this.script, this.status]) {
      select.addEventListener('change', () => this.query(PAGE));
    }
    filters.append(this.text, this.script, this.status);
    this.node.appendChild(filters);

    this.summary = document.createElement('div');
    this.summary.className = 'jp-scriptrun-summary';
    this.summary.setAttribute('aria-live', 'polite');
    this.node.appendChild(this.summary);

    this.list = document.createElement('ul');
    this.list.className = 'jp-scriptrun-list';
    this.list.setAttribute('aria-label', 'Runs, newest first');
    this.node.appendChild(this.list);

    this.more = document.createElement('button');
    this.more.className = 'jp-Button jp-mod-styled jp-mod-minimal jp-scriptrun-more';
    this.more.textContent = 'Show more';
    this.more.addEventListener('click', () => this.query((this.model.query.limit ?? PAGE) + PAGE));
    this.node.appendChild(this.more);

    this.model.changed.connect(this.onChanged, this);
    void this.loadScripts();
    this.render();
  }

  dispose(): void {
    this.model.changed.disconnect(this.onChanged, this);
    super.dispose();
  }

  private query(limit: number): void {
    this.model.setQuery({
      script: this.script.value ? [this.script.value] : [],
      status: this.status.value ? [this.status.value] : [],
      limit
    });
  }

  private async loadScripts(): Promise<void> {
    try {
      const scripts = await api.scripts();
      for (const script of scripts) {
        this.script.appendChild(new Option(script.name, script.name));
      }
    } catch {
      // The list shows the server's error on its own.
    }
  }

  private onChanged(): void {
    this.render();
  }

  private render(): void {
    const runs = this.model.runs.filter(r => matches(r, this.text.value));
    const summary = activeSummary(this.model.active);
    this.summary.textContent = this.model.error
      ? `Cannot load runs: ${this.model.error}`
      : summary || 'Nothing running';
    this.summary.classList.toggle('jp-scriptrun-error', Boolean(this.model.error));
    this.list.textContent = '';
    if (!runs.length && !this.model.error) {
      const empty = document.createElement('li');
      empty.className = 'jp-scriptrun-empty';
      empty.textContent = 'No runs yet. Right-click a script in the file browser and choose "Run with scriptrun…".';
      this.list.appendChild(empty);
    }
    for (const run of runs) {
      this.list.appendChild(this.item(run));
    }
    // style, not the hidden attribute: .jp-Button's display would win over it.
    this.more.style.display = this.model.runs.length < (this.model.query.limit ?? PAGE) ? 'none' : '';
  }

  private item(run: IRun): HTMLElement {
    const li = document.createElement('li');
    li.className = 'jp-scriptrun-item';
    const button = document.createElement('button');
    button.className = 'jp-scriptrun-item-button';
    button.dataset.runId = run.id;
    button.title = `Open run ${run.id.slice(0, 8)}`;
    button.addEventListener('click', () => this.actions.openRun(run.id));
    const top = document.createElement('div');
    top.className = 'jp-scriptrun-item-top';
    const name = document.createElement('span');
    name.className = 'jp-scriptrun-item-script';
    name.textContent = run.script;
    top.append(statusChip(run.status), name);
    const meta = document.createElement('div');
    meta.className = 'jp-scriptrun-item-meta';
    const when = formatWhen(run.started_at ?? run.queued_at);
    const took = formatDuration(run.duration_s);
    meta.textContent = [run.id.slice(0, 8), when, took].filter(Boolean).join(' · ');
    button.append(top, meta);
    if (run.status === 'running') {
      const progress = this.model.progress[run.id];
      const fraction = progressFraction({ progress });
      button.appendChild(progressBar(fraction, `${run.script} progress`));
      if (progress?.message) {
        const message = document.createElement('div');
        message.className = 'jp-scriptrun-item-meta';
        message.textContent = progress.message;
        button.appendChild(message);
      }
    } else if (run.message && run.status !== 'succeeded') {
      const message = document.createElement('div');
      // A cancel is somebody's choice, not a fault: its message is not shown as an error.
      message.className = run.status === 'cancelled' ? 'jp-scriptrun-item-meta' : 'jp-scriptrun-item-message';
      message.textContent = run.message;
      button.appendChild(message);
    }
    li.appendChild(button);
    return li;
  }
}
