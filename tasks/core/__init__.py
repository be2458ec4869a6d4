"""What every stage uses and no stage owns: PostgreSQL connections and errors, SQL files, the
database concurrency limits, the lake and its typed manifests, retries, alerts and run reports.
Imports no stage."""
