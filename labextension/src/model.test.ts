import { describe, expect, it } from 'vitest';

import {
  activeSummary,
  changed,
  formatDuration,
  formFields,
  languageOf,
  matches,
  nextPollMs,
  progressFraction,
  readForm,
  scheduleOptionFields,
  scheduleValues,
  scriptFigures,
  stemName,
  timingOf
} from './model';

const schema = {
  type: 'object',
  properties: {
    message: { type: 'string', default: 'Hello World!', description: 'The text to repeat' },
    multiplier: { type: 'integer', default: 2, minimum: 1 },
    ratio: { type: 'number' },
    loud: { type: 'boolean', default: false },
    colour: { enum: ['red', 'green'], default: 'red' },
    tags: { type: 'array', items: { type: 'string' } },
    name: { type: 'string' }
  },
  required: ['name']
};

describe('the form a schema asks for', () => {
  it('has one field per parameter, in order, with its kind and default', () => {
    const fields = formFields(schema);
    expect(fields.map(f => [f.name, f.kind, f.initial])).toEqual([
      ['message', 'string', 'Hello World!'],
      ['multiplier', 'integer', '2'],
      ['ratio', 'number', ''],
      ['loud', 'boolean', 'false'],
      ['colour', 'choice', 'red'],
      ['tags', 'json', ''],
      ['name', 'string', '']
    ]);
    expect(fields.find(f => f.name === 'name')!.required).toBe(true);
    expect(fields.find(f => f.name === 'colour')!.choices).toEqual(['red', 'green']);
  });

  it('starts from given values (a re-run) instead of the defaults', () => {
    const fields = formFields(schema, { multiplier: 7, tags: ['a'] });
    expect(fields.find(f => f.name === 'multiplier')!.initial).toBe('7');
    expect(fields.find(f => f.name === 'tags')!.initial).toBe('["a"]');
  });

  it('is empty for a script without parameters', () => {
    expect(formFields(undefined)).toEqual([]);
    expect(formFields({ type: 'object', properties: {} })).toEqual([]);
  });
});

describe('reading what was typed', () => {
  const fields = formFields(schema);

  it('types each value by its field and leaves empty optional ones to the default', () => {
    const { params, problems } = readForm(fields, {
      message: 'hi',
      multiplier: ' 3 ',
      ratio: '0.5',
      loud: 'true',
      colour: 'green',
      tags: '["x", "y"]',
      name: 'n'
    });
    expect(problems).toEqual({});
    expect(params).toEqual({
      message: 'hi',
      multiplier: 3,
      ratio: 0.5,
      loud: true,
      colour: 'green',
      tags: ['x', 'y'],
      name: 'n'
    });
    expect(readForm(fields, { name: 'n' }).params).toEqual({ name: 'n' });
  });

  it('names every problem at once, by field', () => {
    const { problems } = readForm(fields, {
      multiplier: '2.5',
      ratio: 'lots',
      loud: 'yes',
      tags: '[1,',
      name: ''
    });
    expect(problems).toEqual({
      multiplier: 'multiplier: "2.5" is not an integer',
      ratio: 'ratio: "lots" is not a number',
      loud: 'loud: "yes" is not true or false',
      tags: 'tags: not valid JSON',
      name: 'name: a value is required'
    });
  });

  it('leaves ranges to the server, which checks them as for every front end', () => {
    expect(readForm(fields, { multiplier: '0', name: 'n' }).problems).toEqual({});
  });
});

describe('the words for runs', () => {
  it('counts what is active for the status bar', () => {
    const runs = [{ status: 'running' }, { status: 'queued' }, { status: 'running' }, { status: 'failed' }];
    expect(activeSummary(runs)).toBe('2 running · 1 queued');
    expect(activeSummary([{ status: 'succeeded' }])).toBe('');
  });

  it('says durations as people read them', () => {
    expect(formatDuration(0.0372)).toBe('37 ms');
    expect(formatDuration(3.456)).toBe('3.46 s');
    expect(formatDuration(42.1)).toBe('42.1 s');
    expect(formatDuration(245)).toBe('4 min 05 s');
    expect(formatDuration(7380)).toBe('2 h 03 min');
    expect(formatDuration(null)).toBe('');
  });

  it('filters by id, script, status or message', () => {
    const run = { id: 'abc123', script: 'report', status: 'failed', message: 'Disk full' };
    expect(matches(run, 'DISK')).toBe(true);
    expect(matches(run, 'abc')).toBe(true);
    expect(matches(run, 'other')).toBe(false);
    expect(matches(run, '  ')).toBe(true);
  });

  it('has a fraction only when the progress has a total', () => {
    expect(progressFraction({ progress: { done: 3, total: 4 } })).toBe(0.75);
    expect(progressFraction({ progress: { done: 9, total: 4 } })).toBe(1);
    expect(progressFraction({ progress: { done: 3, total: null } })).toBeNull();
    expect(progressFraction({ progress: null })).toBeNull();
  });
});

describe('files of the file browser', () => {
  it('run in the language their extension names', () => {
    expect(languageOf('a/b/report.py')).toBe('python');
    expect(languageOf('x.SH')).toBe('bash');
    expect(languageOf('n.ipynb')).toBe('notebook');
    expect(languageOf('notes.txt')).toBeNull();
    expect(languageOf('Makefile')).toBeNull();
  });

  it('are named by a stem a script name can be', () => {
    expect(stemName('reports/daily report.py')).toBe('daily_report');
    expect(stemName('.hidden.py')).toBe('hidden');
    expect(stemName('???.sh')).toBe('script');
  });
});

describe('polling', () => {
  it('is quick while runs go, slower idle or hidden, and backs off on failures', () => {
    expect(nextPollMs(true, false, 0)).toBe(1000);
    expect(nextPollMs(false, false, 0)).toBe(5000);
    expect(nextPollMs(false, true, 0)).toBe(15000);
    expect(nextPollMs(true, false, 3)).toBe(8000);
    expect(nextPollMs(false, false, 10)).toBe(60000);
  });
});

describe('the fleet view', () => {
  it('sums runs per script: count, failures, median and slowest of those that ended', () => {
    const runs = [
      { script: 'a', status: 'succeeded', duration_s: 1 },
      { script: 'a', status: 'failed', duration_s: 3 },
      { script: 'a', status: 'lost', duration_s: null },
      { script: 'b', status: 'succeeded', duration_s: 2 },
      { script: 'b', status: 'timed_out', duration_s: 10 }
    ];
    expect(scriptFigures(runs)).toEqual([
      { script: 'a', runs: 3, failed: 2, median: 2, slowest: 3 },
      { script: 'b', runs: 2, failed: 1, median: 6, slowest: 10 }
    ]);
    expect(scriptFigures([])).toEqual([]);
  });
});

describe('a schedule dialog', () => {
  const options = {
    cron: { type: 'string' },
    every: { type: ['number', 'string'] },
    at: { type: 'string', format: 'date-time' },
    end: { type: 'string', format: 'date-time', description: 'no tick after this time' },
    catchup: { enum: ['latest', 'none', 'all'], default: 'latest', description: 'after downtime' },
    jitter: { type: 'number', minimum: 0 },
    notify: { type: 'array', items: { type: 'string' } },
    notify_on: { type: 'array', items: { enum: ['succeeded', 'failed'] }, default: ['failed'] },
    timezone: { type: 'string' },
    name: { type: 'string' },
    parameters: { type: 'object' }
  };

  it('asks under "More options" for every option the server declares but the timing, zone and name', () => {
    const fields = scheduleOptionFields(options);
    expect(fields.map(f => [f.name, f.kind, f.initial])).toEqual([
      ['end', 'string', ''],
      ['catchup', 'choice', ''],
      ['jitter', 'number', ''],
      ['notify', 'list', ''],
      ['notify_on', 'list', '']
    ]);
    expect(fields.find(f => f.name === 'catchup')!.description).toContain('default latest');
    expect(fields.find(f => f.name === 'notify_on')!.description).toContain('of succeeded, failed');
    expect(fields.find(f => f.name === 'end')!.description).toContain('2027-01-31T09:00');
  });

  it('reads a list from commas or lines, and leaves empty options out', () => {
    const fields = scheduleOptionFields(options);
    const { params, problems } = readForm(fields, { notify: 'mailto://a@b, json://h/x\n', jitter: '' });
    expect(problems).toEqual({});
    expect(params).toEqual({ notify: ['mailto://a@b', 'json://h/x'] });
  });

  it('starts an edit from the schedule as the API shows it, in the request words', () => {
    const values = scheduleValues({
      name: 'nightly', cron: null, every_s: 3600, once_at: null, end_at: '2027-01-01T00:00:00+00:00',
      catchup: 'none', jitter_s: 5, notify: ['json://h/x'], notify_on: [], timezone: 'Europe/Berlin'
    });
    expect(values).toEqual({
      name: 'nightly', every: 3600, end: '2027-01-01T00:00:00+00:00', catchup: 'none', jitter: 5,
      notify: ['json://h/x'], timezone: 'Europe/Berlin'
    });
    expect(timingOf(values)).toEqual({ kind: 'every', text: '3600' });
    const fields = scheduleOptionFields(options, values);
    expect(fields.map(f => f.initial)).toEqual(['2027-01-01T00:00:00+00:00', 'none', '5', 'json://h/x', '']);
  });

  it('sends only what an edit changed, and null for an option emptied', () => {
    const fields = scheduleOptionFields(options, { jitter: 5, catchup: 'none' });
    const texts = { end: '', catchup: 'all', jitter: '', notify: '', notify_on: '' };
    const { params } = readForm(fields, texts);
    expect(changed(fields, texts, params)).toEqual({ catchup: 'all', jitter: null });
    const same = { end: '', catchup: 'none', jitter: '5', notify: '', notify_on: '' };
    expect(changed(fields, same, readForm(fields, same).params)).toEqual({});
  });
});
