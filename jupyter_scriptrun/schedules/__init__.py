"""The words of schedules: cron lines as cron reads them, timetables in a time zone, and a
schedule's options declared once."""
