/**
 * jupyter_scriptrun in JupyterLab itself: the "Script runs" sidebar, a tab per run,
 * "Run with scriptrun…" and "Schedule with scriptrun…" on scripts in the file browser
 * and on the notebook and editor toolbars, a launcher card for the catalogue, a status
 * bar count and a toast when a run started here ends. Everything goes through the REST
 * API (api.ts), as curl would.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification, WidgetTracker } from '@jupyterlab/apputils';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { IStatusBar } from '@jupyterlab/statusbar';
import { historyIcon, LabIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { api, IRun, IScript, ISchedule } from './api';
import { runDialog, scheduleDialog, targetOfFile, ITarget } from './dialogs';
import { activeSummary, languageOf, statusLabel } from './model';
import { RunsModel } from './runs';
import { RunView } from './runview';
import { RunsSidebar } from './sidebar';
import { CatalogueView, FleetView, SchedulesView } from './views';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M4 4h16v2H4zm0 14h10v2H4zm0-7h16v2H4zM16 15l6 4-6 4z"/></svg>';
export const scriptrunIcon = new LabIcon({ name: 'scriptrun:runs', svgstr: ICON_SVG });

const CMD = {
  runFile: 'scriptrun:run-file',
  scheduleFile: 'scriptrun:schedule-file',
  openRuns: 'scriptrun:open-runs',
  openRun: 'scriptrun:open-run',
  openCatalogue: 'scriptrun:open-catalogue',
  openSchedules: 'scriptrun:open-schedules',
  openFleet: 'scriptrun:open-fleet'
};

// Every file: the commands hide themselves for a file that is no script (isVisible).
const FILE_SELECTOR = '.jp-DirListing-item[data-isdir="false"]';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-scriptrun:plugin',
  description: 'Runs in the sidebar, scripts run from the file browser.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer, IDefaultFileBrowser, ILauncher, IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    restorer: ILayoutRestorer | null,
    browser: IDefaultFileBrowser | null,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const model = new RunsModel();
    const tracker = new WidgetTracker<MainAreaWidget<RunView>>({ namespace: 'scriptrun-run' });
    const tabs = new Map<string, MainAreaWidget<Widget>>();

    const openRun = (id: string) => {
      const existing = tracker.find(w => w.content.runId === id);
      if (existing) {
        shell.activateById(existing.id);
        return;
      }
      const content = new RunView(id, { rerun, started, moved: () => model.poke() });
      const widget = new MainAreaWidget({ content });
      widget.id = content.id;
      widget.title.icon = scriptrunIcon;
      content.title.changed.connect(() => {
        widget.title.label = content.title.label;
        widget.title.caption = content.title.caption;
      });
      void tracker.add(widget);
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const openTab = (id: string, make: () => Widget) => {
      const open = tabs.get(id);
      if (open && !open.isDisposed) {
        shell.activateById(open.id);
        const content = open.content as Widget & { reload?: () => Promise<void> };
        void content.reload?.();
        return;
      }
      const content = make();
      const widget = new MainAreaWidget({ content });
      widget.id = id;
      widget.title.label = content.title.label;
      widget.title.icon = scriptrunIcon;
      tabs.set(id, widget);
      shell.add(widget, 'main');
      shell.activateById(id);
    };

    function started(run: IRun): void {
      model.track(run);
      openRun(run.id);
    }

    async function runTarget(target: ITarget, values: { [name: string]: unknown } = {}) {
      const run = await runDialog(target, values);
      if (run) {
        started(run);
      }
    }

    async function rerun(run: IRun): Promise<void> {
      const params = run.parameters ?? {};
      if (run.source && run.language) {
        const target: ITarget = {
          script: null,
          adhoc: {
            name: run.script,
            language: String(run.language),
            source: String(run.source),
            path: `${run.script} (the text of run ${run.id.slice(0, 8)})`
          }
        };
        await runTarget(target, params);
        return;
      }
      try {
        const scripts = await api.scripts();
        const script = scripts.find(s => s.name === run.script) ?? null;
        if (!script) {
          Notification.error(`No script named ${run.script} is registered any more`);
          return;
        }
        await runTarget({ script }, params);
      } catch (error) {
        Notification.error(String((error as Error).message));
      }
    }

    async function editSchedule(schedule: ISchedule): Promise<void> {
      const script = (await api.scripts()).find(s => s.name === schedule.script);
      if (!script) {
        Notification.error(`No script named ${schedule.script} is registered any more: the schedule can be paused or deleted, not edited`);
        return;
      }
      const saved = await scheduleDialog({ script }, schedule);
      if (saved && saved !== schedule) {
        Notification.success(`Saved ${saved.name}`, { autoClose: 4000 });
      }
    }

    const withFile = async (path: string | undefined, schedule: boolean) => {
      if (!path) {
        return;
      }
      try {
        const target = await targetOfFile(app.serviceManager.contents, path);
        if (schedule) {
          const made = await scheduleDialog(target);
          if (made) {
            Notification.success(`Scheduled ${made.name}`, {
              autoClose: 5000,
              actions: [{ label: 'Schedules', callback: () => app.commands.execute(CMD.openSchedules) }]
            });
            openTab('scriptrun-schedules', () => new SchedulesView(started, editSchedule));
          }
        } else {
          await runTarget(target);
        }
      } catch (error) {
        Notification.error(String((error as Error).message), { autoClose: 8000 });
      }
    };

    const selectedPath = (): string | undefined => {
      const item = browser?.selectedItems().next();
      return item && !item.done ? item.value.path : undefined;
    };

    const currentPath = (): string | undefined => {
      const current = shell.currentWidget as IDocumentWidget | null;
      return current?.context?.path;
    };

    app.commands.addCommand(CMD.runFile, {
      label: 'Run with scriptrun…',
      caption: 'Run this script on the scriptrun workers',
      icon: scriptrunIcon,
      isVisible: () => Boolean(languageOf(selectedPath() ?? '')),
      execute: args => withFile((args.path as string) ?? selectedPath() ?? currentPath(), false)
    });
    app.commands.addCommand(CMD.scheduleFile, {
      label: 'Schedule with scriptrun…',
      caption: 'Run this script on a schedule',
      isVisible: () => Boolean(languageOf(selectedPath() ?? '')),
      execute: args => withFile((args.path as string) ?? selectedPath() ?? currentPath(), true)
    });
    app.commands.addCommand(CMD.openRuns, {
      label: 'Script runs',
      execute: () => shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CMD.openRun, {
      label: 'Open a script run',
      execute: args => openRun(String(args.id))
    });
    app.commands.addCommand(CMD.openCatalogue, {
      label: 'Scripts',
      caption: 'The registered scripts, each with a Run button',
      icon: scriptrunIcon,
      execute: () => openTab('scriptrun-catalogue', () => new CatalogueView(script => void runTarget({ script })))
    });
    app.commands.addCommand(CMD.openSchedules, {
      label: 'Script schedules',
      execute: () => openTab('scriptrun-schedules', () => new SchedulesView(started, editSchedule))
    });
    app.commands.addCommand(CMD.openFleet, {
      label: 'Script fleet',
      execute: () => openTab('scriptrun-fleet', () => new FleetView(openRun))
    });

    app.contextMenu.addItem({ command: CMD.runFile, selector: FILE_SELECTOR, rank: 3 });
    app.contextMenu.addItem({ command: CMD.scheduleFile, selector: FILE_SELECTOR, rank: 3.1 });

    // The notebook and editor toolbars: run the open file.
    const toolbarExtension = {
      createNew: (widget: IDocumentWidget) => {
        const button = new ToolbarButton({
          icon: scriptrunIcon,
          tooltip: 'Run with scriptrun…',
          label: 'scriptrun',
          onClick: () => void withFile(widget.context.path, false)
        });
        button.addClass('jp-scriptrun-toolbar-button');
        widget.toolbar.insertItem(10, 'scriptrun', button);
        const schedule = new ToolbarButton({
          icon: historyIcon,
          tooltip: 'Schedule with scriptrun…',
          onClick: () => void withFile(widget.context.path, true)
        });
        schedule.addClass('jp-scriptrun-toolbar-schedule');
        widget.toolbar.insertItem(11, 'scriptrun-schedule', schedule);
        return button;
      }
    };
    app.docRegistry.addWidgetExtension('Notebook', toolbarExtension as any);
    app.docRegistry.addWidgetExtension('Editor', toolbarExtension as any);

    const sidebar = new RunsSidebar(model, {
      openRun,
      openCatalogue: () => void app.commands.execute(CMD.openCatalogue),
      openSchedules: () => void app.commands.execute(CMD.openSchedules),
      openFleet: () => void app.commands.execute(CMD.openFleet)
    });
    sidebar.title.icon = scriptrunIcon;
    shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);
    if (restorer) {
      void restorer.restore(tracker, {
        command: CMD.openRun,
        args: w => ({ id: w.content.runId }),
        name: w => w.content.runId
      });
    }

    launcher?.add({ command: CMD.openCatalogue, category: 'Other', rank: 1 });
    for (const command of [CMD.openRuns, CMD.openCatalogue, CMD.openSchedules, CMD.openFleet]) {
      palette?.addItem({ command, category: 'Script runs' });
    }

    if (statusBar) {
      const item = new Widget();
      item.addClass('jp-scriptrun-status');
      item.node.title = 'Script runs: open the sidebar';
      item.node.setAttribute('role', 'button');
      item.node.tabIndex = 0;
      const open = () => shell.activateById(sidebar.id);
      item.node.addEventListener('click', open);
      item.node.addEventListener('keydown', e => (e.key === 'Enter' || e.key === ' ') && open());
      const update = () => {
        const text = activeSummary(model.active);
        item.node.textContent = text ? `▶ ${text}` : '';
        item.setHidden(!text);
      };
      model.changed.connect(update);
      update();
      statusBar.registerStatusItem('scriptrun-status', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => true
      });
    }

    model.ended.connect((_, run) => {
      const words = `${run.script} ${statusLabel(run.status)}${run.message ? `: ${run.message}` : ''}`;
      const options = {
        autoClose: 6000,
        actions: [{ label: 'Open', callback: () => openRun(run.id) }]
      };
      if (run.status === 'succeeded') {
        Notification.success(words, options);
      } else if (run.status === 'cancelled') {
        Notification.warning(words, options);
      } else {
        Notification.error(words, options);
      }
    });
  }
};

export default plugin;
export type { IScript };
