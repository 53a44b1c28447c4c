"""Pure detection logic: functions over immutable window snapshots. No I/O here."""
