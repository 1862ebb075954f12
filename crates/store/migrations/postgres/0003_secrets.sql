-- Settings version: bumped by every save, so that processes sharing the database (core
-- replicas, the admin CLI) notice a change with one small query.
ALTER TABLE settings ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
