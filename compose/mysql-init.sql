-- Lets the stockflow user create InvestorsDB and the tests' own databases (Docker stack).
GRANT ALL PRIVILEGES ON *.* TO 'stockflow'@'%';
FLUSH PRIVILEGES;
