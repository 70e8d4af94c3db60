-- Prefect's Postgres search indexes use trigram matching
-- (https://docs.prefect.io/v3/advanced/self-hosted#postgresql); the migrations need the extension.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
