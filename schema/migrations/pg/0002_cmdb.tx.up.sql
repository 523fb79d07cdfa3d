-- CI types are data: attribute definitions live in a JSON document.
CREATE TABLE ci_types (
	name        TEXT PRIMARY KEY,
	description TEXT NOT NULL DEFAULT '',
	attributes  TEXT NOT NULL DEFAULT '[]',
	builtin     BOOLEAN NOT NULL DEFAULT FALSE,
	version     BIGINT NOT NULL DEFAULT 1,
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE cis (
	id         BIGSERIAL PRIMARY KEY,
	type       TEXT NOT NULL REFERENCES ci_types (name),
	name       TEXT NOT NULL,
	attributes TEXT NOT NULL DEFAULT '{}',
	version    BIGINT NOT NULL DEFAULT 1,
	created_at TIMESTAMPTZ NOT NULL,
	created_by TEXT NOT NULL DEFAULT '',
	updated_at TIMESTAMPTZ NOT NULL,
	updated_by TEXT NOT NULL DEFAULT '',
	UNIQUE (type, name)
);
CREATE INDEX cis_name_idx ON cis (name);

-- Labels and attribute values in their own indexed tables, so selectors and
-- attribute filters use the same indexes on Postgres and SQLite.
CREATE TABLE ci_labels (
	ci_id BIGINT NOT NULL REFERENCES cis (id) ON DELETE CASCADE,
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (ci_id, key)
);
CREATE INDEX ci_labels_key_value_idx ON ci_labels (key, value, ci_id);

CREATE TABLE ci_attrs (
	ci_id BIGINT NOT NULL REFERENCES cis (id) ON DELETE CASCADE,
	type  TEXT NOT NULL,
	name  TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (ci_id, name)
);
CREATE INDEX ci_attrs_lookup_idx ON ci_attrs (type, name, value, ci_id);

-- Attributes declared unique: one row per (type, attribute, value).
CREATE TABLE ci_unique_values (
	type  TEXT NOT NULL,
	name  TEXT NOT NULL,
	value TEXT NOT NULL,
	ci_id BIGINT NOT NULL REFERENCES cis (id) ON DELETE CASCADE,
	PRIMARY KEY (type, name, value)
);
CREATE INDEX ci_unique_values_ci_idx ON ci_unique_values (ci_id);

CREATE TABLE relation_types (
	name         TEXT PRIMARY KEY,
	description  TEXT NOT NULL DEFAULT '',
	cardinality  TEXT NOT NULL CHECK (cardinality IN ('one_to_one', 'one_to_many', 'many_to_one', 'many_to_many')),
	acyclic      BOOLEAN NOT NULL DEFAULT TRUE,
	impact       BOOLEAN NOT NULL DEFAULT TRUE,
	builtin      BOOLEAN NOT NULL DEFAULT FALSE,
	created_at   TIMESTAMPTZ NOT NULL
);

-- source --type--> target reads "source <type> target": web runs_on host-1.
CREATE TABLE relations (
	id         BIGSERIAL PRIMARY KEY,
	type       TEXT NOT NULL REFERENCES relation_types (name),
	source_id  BIGINT NOT NULL REFERENCES cis (id),
	target_id  BIGINT NOT NULL REFERENCES cis (id),
	created_at TIMESTAMPTZ NOT NULL,
	created_by TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',
	UNIQUE (type, source_id, target_id),
	CHECK (source_id <> target_id)
);
CREATE INDEX relations_source_idx ON relations (source_id, type);
CREATE INDEX relations_target_idx ON relations (target_id, type);

-- Every change of a CI, kept after the CI is deleted.
CREATE TABLE ci_history (
	id         BIGSERIAL PRIMARY KEY,
	ci_id      BIGINT NOT NULL,
	ci_type    TEXT NOT NULL,
	ci_name    TEXT NOT NULL,
	version    BIGINT NOT NULL,
	op         TEXT NOT NULL,
	changed_at TIMESTAMPTZ NOT NULL,
	changed_by TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',
	diff       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ci_history_ci_idx ON ci_history (ci_id, id);

-- The ordered change feed. Writers take a transaction lock before
-- inserting, so IDs become visible in order and a cursor never skips.
CREATE TABLE cmdb_events (
	id        BIGSERIAL PRIMARY KEY,
	at        TIMESTAMPTZ NOT NULL,
	kind      TEXT NOT NULL,
	op        TEXT NOT NULL,
	object_id BIGINT NOT NULL,
	ci_type   TEXT NOT NULL DEFAULT '',
	actor     TEXT NOT NULL DEFAULT '',
	run_id    TEXT NOT NULL DEFAULT '',
	data      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX cmdb_events_at_idx ON cmdb_events (at);
