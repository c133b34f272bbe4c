-- Run once by the postgres image on first start (docker-compose.yml):
-- the databases of the billing worker and of the backups worker's restore
-- ledger, next to lethe_contacts (POSTGRES_DB).
CREATE DATABASE lethe_billing OWNER lethe;
CREATE DATABASE lethe_backups OWNER lethe;
