"""When things run: cron lines as cron reads them, timetables in a time zone, and a
schedule's options declared once. (Not ``schedules``: the facade's ``sr.schedules()``
would be shadowed by a subpackage of that name once imported.)"""
