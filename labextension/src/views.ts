/**
 * The main-area tabs reached from the sidebar and the launcher: the catalogue of
 * registered scripts (each with a Run button), the schedules, and the fleet's workers.
 */
import { Widget } from '@lumino/widgets';

import { api, ApiError, IRun, IScript, ISchedule } from './api';
import { el } from './dom';
import { formatDuration, formatWhen, scriptFigures } from './model';

/** A tab that loads its content, shows the server's error if any, and reloads. */
abstract class LoadingView extends Widget {
  private timer: number | null = null;

  constructor(id: string, label: string, private everyMs = 0) {
    super();
    this.id = id;
    this.title.label = label;
    this.title.closable = true;
    this.addClass('jp-scriptrun-view');
    void this.reload();
  }

  dispose(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    super.dispose();
  }

  async reload(): Promise<void> {
    try {
      const content = await this.load();
      this.node.textContent = '';
      this.node.appendChild(content);
    } catch (error) {
      this.node.textContent = '';
      const message = error instanceof ApiError ? error.message : String(error);
      this.node.appendChild(el('p', 'jp-scriptrun-error', `Cannot load: ${message}`));
    }
    if (this.everyMs && !this.isDisposed) {
      this.timer = window.setTimeout(() => void this.reload(), document.hidden ? this.everyMs * 3 : this.everyMs);
    }
  }

  protected abstract load(): Promise<HTMLElement>;
}

export class CatalogueView extends LoadingView {
  constructor(private run: (script: IScript) => void) {
    super('scriptrun-catalogue', 'Scripts');
  }

  protected async load(): Promise<HTMLElement> {
    const scripts = await api.scripts();
    const root = el('div');
    root.appendChild(el('h2', '', 'Scripts'));
    root.appendChild(el('p', 'jp-scriptrun-muted', `${scripts.length} registered script${scripts.length === 1 ? '' : 's'}; Run asks for its parameters.`));
    const list = el('ul', 'jp-scriptrun-catalogue');
    for (const script of scripts) {
      const item = el('li', 'jp-scriptrun-card');
      const text = el('div', 'jp-scriptrun-card-text');
      text.append(el('h3', '', script.name), el('p', '', script.description || 'no description'), el('code', 'jp-scriptrun-muted', script.path));
      const button = el('button', 'jp-Button jp-mod-styled jp-mod-accept', 'Run…');
      button.setAttribute('aria-label', `Run ${script.name}`);
      button.addEventListener('click', () => this.run(script));
      item.append(text, button);
      list.appendChild(item);
    }
    root.appendChild(list);
    return root;
  }
}

function table(columns: string[], rows: string[][]): HTMLElement {
  const wrap = el('div', 'jp-scriptrun-table-wrap');
  const t = el('table', 'jp-scriptrun-table');
  const head = el('tr');
  for (const c of columns) {
    head.appendChild(el('th', '', c));
  }
  t.appendChild(el('thead')).appendChild(head);
  const body = t.appendChild(el('tbody'));
  for (const row of rows) {
    const tr = el('tr');
    for (const cell of row) {
      tr.appendChild(el('td', '', cell));
    }
    body.appendChild(tr);
  }
  wrap.appendChild(t);
  return wrap;
}

export class SchedulesView extends LoadingView {
  constructor(
    private started: (run: IRun) => void = () => undefined,
    private edit: (schedule: ISchedule) => Promise<void> = async () => undefined
  ) {
    super('scriptrun-schedules', 'Schedules', 10000);
  }

  protected async load(): Promise<HTMLElement> {
    const schedules = await api.schedules();
    const root = el('div');
    root.appendChild(el('h2', '', 'Schedules'));
    if (!schedules.length) {
      root.appendChild(el('p', 'jp-scriptrun-muted', 'No schedules. Right-click a script in the file browser and choose "Schedule with scriptrun…".'));
      return root;
    }
    const rows = schedules.map(s => [
      String(s.name),
      String(s.script),
      String(s.state),
      String(s.cron ?? (s.every_s !== undefined && s.every_s !== null ? `every ${s.every_s} s` : s.once_at ?? '')),
      String(s.timezone ?? ''),
      Array.isArray(s.next_runs) && s.next_runs.length ? new Date(String(s.next_runs[0])).toLocaleString() : '',
      s.last_tick_at ? formatWhen(String(s.last_tick_at)) : '',
      String(s.fired ?? 0)
    ]);
    const wrap = table(['name', 'script', 'state', 'timing', 'zone', 'next', 'last tick', 'fired', ''], rows.map(r => [...r, '']));
    const bodyRows = wrap.querySelectorAll('tbody tr');
    schedules.forEach((s, i) => {
      const cell = bodyRows[i].lastElementChild as HTMLElement;
      cell.className = 'jp-scriptrun-actions';
      const act = (label: string, title: string, action: () => Promise<unknown>) => {
        const b = el('button', 'jp-Button jp-mod-styled jp-mod-minimal', label);
        b.title = `${title} ${s.name}`;
        b.setAttribute('aria-label', `${title} ${s.name}`);
        b.addEventListener('click', async () => {
          b.disabled = true;
          try {
            await action();
          } catch (error) {
            root.appendChild(el('p', 'jp-scriptrun-error', String((error as Error).message)));
          }
          void this.reload();
        });
        cell.appendChild(b);
      };
      if (s.state === 'active') {
        act('Pause', 'Pause', () => api.editSchedule(s.id, { state: 'paused' }));
      } else if (s.state === 'paused') {
        act('Resume', 'Resume', () => api.editSchedule(s.id, { state: 'active' }));
      }
      act('Edit…', 'Edit', () => this.edit(s));
      act('Run now', 'Run now', async () => this.started(await api.runScheduleNow(s.id)));
      act('Delete', 'Delete', () => api.deleteSchedule(s.id));
    });
    root.appendChild(wrap);
    return root;
  }
}

export class FleetView extends LoadingView {
  constructor(private openRun: (id: string) => void = () => undefined) {
    super('scriptrun-fleet', 'Fleet', 5000);
  }

  protected async load(): Promise<HTMLElement> {
    const [workers, recent] = await Promise.all([
      api.workers(),
      api.runs({ limit: 500 })
    ]);
    const root = el('div');
    root.appendChild(el('h2', '', 'Fleet'));
    root.appendChild(el('h3', '', `Workers (${workers.length})`));
    if (!workers.length) {
      root.appendChild(el('p', 'jp-scriptrun-muted', 'No worker answered. Start one with `scriptrun worker` (the embedded default starts one when a run is submitted).'));
    } else {
      const rows = workers.map(w => [
        String(w.name ?? ''),
        `${Array.isArray(w.active) ? w.active.length : 0} of ${w.slots ?? '?'}`,
        String(Array.isArray(w.reserved) ? w.reserved.length : 0),
        Array.isArray(w.queues) ? w.queues.join(', ') : ''
      ]);
      root.appendChild(table(['worker', 'running', 'reserved', 'queues'], rows));
    }
    root.appendChild(el('h3', '', 'Scripts over the last runs'));
    const figures = scriptFigures(recent);
    root.appendChild(
      figures.length
        ? table(
            ['script', 'runs', 'failed', 'median', 'slowest'],
            figures.map(f => [f.script, String(f.runs), String(f.failed), formatDuration(f.median), formatDuration(f.slowest)])
          )
        : el('p', 'jp-scriptrun-muted', 'No runs yet.')
    );
    const failures = recent.filter(r => ['failed', 'timed_out', 'lost'].includes(r.status)).slice(0, 10);
    root.appendChild(el('h3', '', 'Recent failures'));
    if (!failures.length) {
      root.appendChild(el('p', 'jp-scriptrun-muted', 'None among the last runs.'));
    }
    const list = el('ul', 'jp-scriptrun-failures');
    for (const run of failures) {
      const item = el('li');
      const link = el('button', 'jp-Button jp-mod-styled jp-mod-minimal', `${run.script} · ${run.id.slice(0, 8)}`);
      link.addEventListener('click', () => this.openRun(run.id));
      item.append(link, el('span', 'jp-scriptrun-muted', ` ${formatWhen(run.finished_at ?? run.queued_at)}: ${run.message ?? run.status}`));
      list.appendChild(item);
    }
    root.appendChild(list);
    return root;
  }
}
