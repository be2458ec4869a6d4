"""Development only: the development ToteSys (seed, churn), a loopback SFTP server, sample feed files,
the demo's queries. Never imported by a production stage (an import-linter contract)."""
