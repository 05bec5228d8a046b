-- The installed root on a sensor (/etc/dragonfly-mle from the .deb, PREFIX/dragonfly-mle from
-- scripts/install): the quick start's hello-world on Suricata's own eve.json, as the systemd
-- unit runs it (docs/operations.md, "A sensor in ten minutes").
--
-- * Suricata writes /var/log/suricata/eve.json (Debian's suricata package, `filetype:
--   regular`); the engine follows it from its end across rotations. User `dragonfly` needs
--   read access to it: docs/operations.md says how.
-- * The position every output has flushed is kept in the unit's StateDirectory
--   (/var/lib/dragonfly-mle: the only place besides the log directory that the unit's
--   ProtectSystem=strict lets it write), so a restart goes on where it stopped.
-- * Results go to the log directory (-l /var/log/dragonfly-mle), which the shipped logrotate
--   snippet rotates.
-- * No redis_host: counters live in the embedded store. Set redis_host/redis_port (and list
--   redis-server.service in the unit's After=) to share them.
--
-- Put your own filter and analyzers beside these and route to them here; `systemctl reload
-- dragonfly-mle` loads the changes without stopping the input.

inputs = {
   { tag="eve", uri="tail:///var/log/suricata/eve.json", script="filter.lua",
     default_analyzer="hello",
     options = { checkpoint = "/var/lib/dragonfly-mle/eve.checkpoint" } },
}

analyzers = {
   { tag="hello",  script="hello-world.lua",  default_analyzer="output", default_output="eve" },
   { tag="output", script="write-to-log.lua", default_analyzer="",       default_output="eve" },
}

outputs = {
   { tag="eve", uri="file://eve-mle.json" },
}
