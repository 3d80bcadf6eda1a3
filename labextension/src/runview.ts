/**
 * One run in a main-area tab: its record, live output and progress while it runs, then
 * its result, error and traceback, attempts and files (pictures inline, the executed
 * notebook rendered), with Re-run and Cancel.
 */
import { Widget } from '@lumino/widgets';

import { api, ApiError, apiUrl, IRun, IRunFile } from './api';
import { el } from './dom';
import { FINAL, formatDuration, progressFraction } from './model';
import { progressBar, statusChip } from './sidebar';

export interface IRunViewActions {
  rerun(run: IRun): void;
  started(run: IRun): void;
  /** The run's status changed: the lists should catch up. */
  moved(run: IRun): void;
}

const MAX_TABLE_ROWS = 200;

/** Data as people read it: a table for a list of records, else indented JSON. */
export function renderData(data: unknown): HTMLElement {
  if (
    Array.isArray(data) &&
    data.length > 0 &&
    data.every(r => r !== null && typeof r === 'object' && !Array.isArray(r))
  ) {
    const rows = data as Record<string, unknown>[];
    const columns = [...new Set(rows.flatMap(r => Object.keys(r)))];
    const wrap = el('div', 'jp-scriptrun-table-wrap');
    const table = el('table', 'jp-scriptrun-table');
    const head = el('tr');
    for (const c of columns) {
      head.appendChild(el('th', '', c));
    }
    table.appendChild(el('thead')).appendChild(head);
    const body = table.appendChild(el('tbody'));
    for (const row of rows.slice(0, MAX_TABLE_ROWS)) {
      const tr = el('tr');
      for (const c of columns) {
        const v = row[c];
        tr.appendChild(el('td', '', v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)));
      }
      body.appendChild(tr);
    }
    wrap.appendChild(table);
    if (rows.length > MAX_TABLE_ROWS) {
      wrap.appendChild(el('p', 'jp-scriptrun-muted', `first ${MAX_TABLE_ROWS} of ${rows.length} rows`));
    }
    return wrap;
  }
  return el('pre', 'jp-scriptrun-pre', JSON.stringify(data, null, 2));
}

export class RunView extends Widget {
  run: IRun | null = null;
  private timer: number | null = null;
  private failures = 0;
  private output = { stdout: '', stderr: '' };
  /** Where the live output goes on from: its attempt and the next chunk's offset. */
  private cursor: { attempt: number | null; offset: number } = { attempt: null, offset: 0 };
  private outputWhole = false;
  private files: IRunFile[] | null = null;
  private attempts: Record<string, unknown>[] = [];

  constructor(
    readonly runId: string,
    private actions: IRunViewActions
  ) {
    super();
    this.addClass('jp-scriptrun-runview');
    this.id = `scriptrun-run-${runId}`;
    this.title.label = `Run ${runId.slice(0, 8)}`;
    this.title.closable = true;
    this.node.tabIndex = 0;
    void this.refresh();
  }

  dispose(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    super.dispose();
  }

  async refresh(): Promise<void> {
    this.timer = null;
    try {
      const run = await api.run(this.runId);
      await this.readOutput(run);
      if (this.run && this.run.status !== run.status) {
        this.actions.moved(run);
      }
      this.run = run;
      if (FINAL.has(run.status) && this.files === null) {
        this.files = await api.files(this.runId).catch(() => []);
        if ((run.attempt ?? 1) > 1) {
          this.attempts = await api.attempts(this.runId).catch(() => []);
        }
      }
      this.failures = 0;
      this.render();
    } catch (error) {
      this.failures += 1;
      this.renderError(error instanceof ApiError ? error.message : String(error));
    }
    if (!this.isDisposed && !(this.run && FINAL.has(this.run.status))) {
      const ms = Math.min(30000, 1000 * 2 ** Math.min(this.failures, 5));
      this.timer = window.setTimeout(() => void this.refresh(), ms);
    }
  }

  /** While the run goes, only the output that arrived since the last read (a long run's
   * log is not fetched again each second); once it ended, the attempt's whole output
   * as it was kept, once. */
  private async readOutput(run: IRun): Promise<void> {
    if (FINAL.has(run.status)) {
      if (!this.outputWhole) {
        const logs = await api.logs(this.runId);
        this.output = { stdout: logs.stdout ?? '', stderr: logs.stderr ?? '' };
        this.outputWhole = true;
      }
      return;
    }
    let page = await api.logsFrom(this.runId, this.cursor.offset);
    if (page.attempt !== this.cursor.attempt) {
      // A retry: its output starts again from its own first chunk.
      if (this.cursor.offset > 0) {
        page = await api.logsFrom(this.runId, 0);
      }
      this.output = { stdout: '', stderr: '' };
    }
    for (const chunk of page.chunks) {
      if (chunk.stream === 'stdout' || chunk.stream === 'stderr') {
        this.output[chunk.stream] += chunk.text;
      }
    }
    this.cursor = { attempt: page.attempt, offset: page.next_offset };
  }

  private renderError(message: string): void {
    this.node.textContent = '';
    this.node.appendChild(el('p', 'jp-scriptrun-error', `Cannot load run ${this.runId}: ${message}`));
  }

  private render(): void {
    const run = this.run!;
    const scroll = this.node.scrollTop;
    this.title.label = `${run.script} · ${run.id.slice(0, 8)}`;
    this.title.caption = `Run ${run.id} of ${run.script}: ${run.status}`;
    this.node.textContent = '';

    const header = el('div', 'jp-scriptrun-runview-header');
    header.appendChild(statusChip(run.status));
    header.appendChild(el('h2', '', run.script));
    header.appendChild(el('code', 'jp-scriptrun-muted', run.id));
    const buttons = el('div', 'jp-scriptrun-buttons');
    const rerun = el('button', 'jp-Button jp-mod-styled jp-mod-accept', 'Re-run…');
    rerun.addEventListener('click', () => this.actions.rerun(run));
    buttons.appendChild(rerun);
    if (!FINAL.has(run.status)) {
      const cancel = el('button', 'jp-Button jp-mod-styled jp-mod-warn', 'Cancel');
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        try {
          await api.cancel(run.id);
        } catch (error) {
          this.node.appendChild(el('p', 'jp-scriptrun-error', String((error as Error).message)));
        }
        void this.refresh();
      });
      buttons.appendChild(cancel);
    }
    header.appendChild(buttons);
    this.node.appendChild(header);

    if (run.status === 'running') {
      const fraction = progressFraction(run);
      this.node.appendChild(progressBar(fraction, 'progress'));
      if (run.progress?.message) {
        this.node.appendChild(el('p', 'jp-scriptrun-muted', run.progress.message));
      }
    }
    if (run.message) {
      this.node.appendChild(el('p', run.status === 'succeeded' ? 'jp-scriptrun-message' : 'jp-scriptrun-error', run.message));
    }

    const facts = el('dl', 'jp-scriptrun-facts');
    const add = (term: string, value: string) => {
      if (value) {
        facts.append(el('dt', '', term), el('dd', '', value));
      }
    };
    add('parameters', JSON.stringify(run.parameters ?? {}));
    add('queued', run.queued_at ? new Date(run.queued_at).toLocaleString() : '');
    add('started', run.started_at ? new Date(run.started_at).toLocaleString() : '');
    add('duration', formatDuration(run.duration_s));
    add('exit code', run.exit_code === null || run.exit_code === undefined ? '' : String(run.exit_code));
    add('peak memory', run.peak_rss_mb ? `${run.peak_rss_mb.toFixed(1)} MiB` : '');
    add('attempt', run.attempt ? String(run.attempt) : '');
    add('worker', run.worker ?? '');
    this.node.appendChild(facts);

    if (run.data !== null && run.data !== undefined) {
      this.node.appendChild(el('h3', '', 'Result'));
      this.node.appendChild(renderData(run.data));
    }
    if (run.traceback || run.error_type) {
      this.node.appendChild(el('h3', '', run.error_type ? `Error: ${run.error_type}` : 'Error'));
      if (run.traceback) {
        this.node.appendChild(el('pre', 'jp-scriptrun-pre jp-scriptrun-traceback', run.traceback));
      }
    }
    for (const stream of ['stdout', 'stderr'] as const) {
      const text = this.output[stream];
      if (!text) {
        continue;
      }
      const details = el('details', 'jp-scriptrun-output');
      details.open = !FINAL.has(run.status) || (stream === 'stderr' && run.status !== 'succeeded');
      details.appendChild(el('summary', '', `${stream} (${text.length.toLocaleString()} characters)`));
      details.appendChild(el('pre', 'jp-scriptrun-pre', text));
      this.node.appendChild(details);
    }
    if (this.attempts.length > 1) {
      this.node.appendChild(el('h3', '', `Attempts (${this.attempts.length})`));
      this.node.appendChild(
        renderData(
          this.attempts.map(a => ({
            attempt: a.attempt,
            status: a.status,
            worker: a.worker,
            duration: formatDuration(a.duration_s as number | null),
            message: a.message ?? a.error_type ?? ''
          }))
        )
      );
    }
    if (this.files && this.files.length) {
      this.node.appendChild(this.renderFiles(run, this.files));
    }
    this.node.scrollTop = scroll;
  }

  private renderFiles(run: IRun, files: IRunFile[]): HTMLElement {
    const section = el('section', 'jp-scriptrun-files');
    section.appendChild(el('h3', '', `Files (${files.length})`));
    const list = el('ul');
    for (const file of files) {
      const item = el('li');
      const url = apiUrl(`executions/${encodeURIComponent(run.id)}/files/${file.name.split('/').map(encodeURIComponent).join('/')}`);
      if (file.note) {
        item.append(el('span', '', file.name), el('span', 'jp-scriptrun-muted', ` — not kept: ${file.note}`));
      } else {
        const link = el('a', '', file.name);
        link.href = url;
        link.download = file.name.split('/').pop() ?? file.name;
        item.append(link, el('span', 'jp-scriptrun-muted', ` ${(file.size / 1024).toFixed(1)} KiB · ${file.media_type}`));
        if (file.media_type.startsWith('image/')) {
          const img = el('img', 'jp-scriptrun-image');
          img.src = url;
          img.alt = file.name;
          item.appendChild(img);
        } else if (file.name.endsWith('.ipynb')) {
          const frame = el('iframe', 'jp-scriptrun-notebook');
          frame.setAttribute('sandbox', '');
          frame.title = `${file.name}, executed`;
          frame.src = `${url}?as=html`;
          item.appendChild(frame);
        }
      }
      list.appendChild(item);
    }
    section.appendChild(list);
    return section;
  }
}
