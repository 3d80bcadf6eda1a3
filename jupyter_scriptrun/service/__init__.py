"""What every front end calls: the client, a run's handle, schedules for people, the
history as DataFrames, the background warm-up, and one-line reasons for what is away."""
