-- The triage example's Parquet archive: findings.lua (shared with the dns, flow and tls
-- examples) also writes each finding to this output when a root has this module, and
-- alert-triage writes its ranked alerts there. config.lua defines the output (parquet://).
return { output = "archive" }
