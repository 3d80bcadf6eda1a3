/**
 * The newest runs, polled once for the whole window (the sidebar and the status bar both
 * read it): every second while something runs, every 5 s while idle, every 15 s in a
 * hidden tab, backing off after failures. Runs started from this window are remembered,
 * so that their end can be told.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { api, ApiError, IRun, IRunQuery } from './api';
import { FINAL, nextPollMs } from './model';

export class RunsModel {
  /** The runs the sidebar's query selects, newest first. */
  runs: IRun[] = [];
  /** Every run queued or running (the status bar's count). */
  active: IRun[] = [];
  error: string | null = null;
  /** The sidebar's filters and page size (``setQuery``). */
  query: IRunQuery = { limit: 50 };
  private timer: number | null = null;
  private failures = 0;
  private disposed = false;
  private started = new Set<string>();
  private changedSignal = new Signal<this, void>(this);
  private endedSignal = new Signal<this, IRun>(this);

  constructor() {
    document.addEventListener('visibilitychange', this.onVisibility);
    void this.refresh();
  }

  /** Emitted after each poll. */
  get changed(): ISignal<this, void> {
    return this.changedSignal;
  }

  /** Emitted when a run started from this window ends. */
  get ended(): ISignal<this, IRun> {
    return this.endedSignal;
  }

  /** Remember a run started here (its end is told), and poll soon. */
  track(run: IRun): void {
    this.started.add(run.id);
    this.runs = [run, ...this.runs.filter(r => r.id !== run.id)];
    this.changedSignal.emit();
    this.schedule(300);
  }

  /** Change the sidebar's filters or page size, and poll now. */
  setQuery(query: IRunQuery): void {
    this.query = query;
    void this.refresh();
  }

  /** Poll now. */
  async refresh(): Promise<void> {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    try {
      const [runs, active] = await Promise.all([
        api.runs(this.query),
        api.runs({ status: ['queued', 'running'], limit: 500 })
      ]);
      this.runs = runs;
      this.active = active;
      this.error = null;
      this.failures = 0;
      await this.tellEnded();
    } catch (error) {
      this.failures += 1;
      this.error = error instanceof ApiError ? error.message : String(error);
    }
    this.changedSignal.emit();
    const busy = this.started.size > 0 || this.active.length > 0;
    this.schedule(nextPollMs(busy, document.hidden, this.failures));
  }

  /** Tell the end of runs started here that are no longer queued or running. */
  private async tellEnded(): Promise<void> {
    const active = new Set(this.active.map(r => r.id));
    for (const id of [...this.started]) {
      if (active.has(id)) {
        continue;
      }
      const run = this.runs.find(r => r.id === id) ?? (await api.run(id));
      if (FINAL.has(run.status)) {
        this.started.delete(id);
        this.endedSignal.emit(run);
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    document.removeEventListener('visibilitychange', this.onVisibility);
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    Signal.clearData(this);
  }

  private schedule(ms: number): void {
    if (this.disposed) {
      return;
    }
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    this.timer = window.setTimeout(() => void this.refresh(), ms);
  }

  private onVisibility = (): void => {
    if (!document.hidden) {
      void this.refresh();
    }
  };
}
