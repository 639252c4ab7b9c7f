-- One database per service: no service reads another's tables.
-- Run once by the postgres image, on first start with an empty data volume, as POSTGRES_USER (who owns them).
CREATE DATABASE intake;
CREATE DATABASE matching;
CREATE DATABASE notify;
CREATE DATABASE metrics;
