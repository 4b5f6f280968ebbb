-- The app user's privileges (Docker stack), the same as compose/stack gives the native one:
-- tables in InvestorsDB and in the tests' and benchmarks' own databases (sf_*), nothing
-- server-wide (no FILE, PROCESS or SUPER; ending its own connections, which a takeover does,
-- needs no privilege). The image's MYSQL_DATABASE grant (ALL on InvestorsDB) is replaced.
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'stockflow'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, REFERENCES,
    CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, SHOW VIEW
    ON `InvestorsDB`.* TO 'stockflow'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, REFERENCES,
    CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER
    ON `sf\_%`.* TO 'stockflow'@'%';

-- The console's account: reads only. Its development password, as the app user's; a real
-- deployment sets its own (STOCKFLOW_CONSOLE_MYSQL_PASSWORD for the console).
CREATE USER IF NOT EXISTS 'stockflow_reader'@'%' IDENTIFIED BY 'stockflow-reader';
GRANT SELECT, SHOW VIEW ON `InvestorsDB`.* TO 'stockflow_reader'@'%';
GRANT SELECT, SHOW VIEW ON `sf\_%`.* TO 'stockflow_reader'@'%';
FLUSH PRIVILEGES;
