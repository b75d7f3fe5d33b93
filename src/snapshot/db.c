// SPDX-License-Identifier: Apache-2.0
/* Snapshot metadata in SQLite: one connection (the caller serialises use with
 * the snapshotter's lock), WAL, synchronous=FULL, foreign keys, one
 * transaction per operation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/snap_internal.h"

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000
/* Bound on a parent chain, so a corrupt database cannot loop us forever. */
#define CHAIN_MAX 100000

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS snapshots ("
    " id INTEGER PRIMARY KEY,"
    " key TEXT UNIQUE NOT NULL,"
    " parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,"
    " kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),"
    " created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " size INTEGER NOT NULL DEFAULT 0,"
    " inodes INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);"
    "CREATE TABLE IF NOT EXISTS labels ("
    " snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
    " key TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " PRIMARY KEY (snapshot_id, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS labels_key ON labels(key);"
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('next_id', 1);";

#define ROW_SELECT                                                                                 \
	"SELECT s.id, s.key, s.parent_id, p.key, s.kind, s.created, s.updated, s.size, s.inodes "  \
	"FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id "

static void stmt_finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}
#define cleanup_stmt rs_cleanup(stmt_finalizep)

static int db_err(sqlite3 *db, int rc, const char *what, struct rs_error *err)
{
	int code;
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = -EAGAIN;
		break;
	case SQLITE_CONSTRAINT:
		code = (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			   ? -EEXIST
			   : -EINVAL;
		break;
	case SQLITE_NOMEM:
		code = -ENOMEM;
		break;
	case SQLITE_FULL:
		code = -ENOSPC;
		break;
	case SQLITE_READONLY:
		code = -EROFS;
		break;
	default:
		code = -EIO;
	}
	return rs_err(err, code, "metadata.db: %s: %s", what, sqlite3_errmsg(db));
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st, struct rs_error *err)
{
	int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return db_err(db, rc, "prepare", err);
	return 0;
}

/* Runs a statement that returns no rows. */
static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, struct rs_error *err)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_err(db, rc, what, err);
	return 0;
}

static int exec(sqlite3 *db, const char *sql, const char *what, struct rs_error *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_err(db, sqlite3_extended_errcode(db), what, err);
	return 0;
}

static int user_version(sqlite3 *db, int *v, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "PRAGMA user_version", &st, err);
	if (r < 0)
		return r;
	if (sqlite3_step(st) != SQLITE_ROW)
		return db_err(db, sqlite3_extended_errcode(db), "read schema version", err);
	*v = sqlite3_column_int(st, 0);
	return 0;
}

static int db_setup(sqlite3 *db, struct rs_error *err)
{
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	int r = exec(db, "PRAGMA journal_mode=WAL", "enable WAL", err);
	if (r < 0)
		return r;
	r = exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "set pragmas", err);
	if (r < 0)
		return r;
	r = snap_db_begin(db, true, err);
	if (r < 0)
		return r;
	int v = 0;
	r = user_version(db, &v, err);
	if (r == 0 && v > SCHEMA_VERSION)
		r = rs_err(err, -EPROTO,
			   "metadata.db: schema version %d is newer than this build's %d", v,
			   SCHEMA_VERSION);
	if (r == 0)
		r = exec(db, schema_sql, "create schema", err);
	if (r == 0 && v < SCHEMA_VERSION)
		r = exec(db, "PRAGMA user_version = 1", "set schema version", err);
	/* ids are never reused, even if the counter were behind the table. */
	if (r == 0)
		r = exec(db,
			 "UPDATE meta SET value = max(value,"
			 " (SELECT IFNULL(MAX(id), 0) + 1 FROM snapshots)) WHERE name = 'next_id'",
			 "check id counter", err);
	if (r < 0) {
		snap_db_rollback(db);
		return r;
	}
	return snap_db_commit(db, err);
}

int snap_db_open(const char *path, sqlite3 **out, struct rs_error *err)
{
	sqlite3 *db = NULL;
	/* Made 0600 before SQLite opens it: SQLite would make it 0644, and its
	 * journal and WAL files take the database file's mode. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return rs_err(err, -errno, "open %s: %s", path, strerror(errno));
	(void)fchmod(fd, 0600); /* one made 0644 by an older version */
	close(fd);
	int rc = sqlite3_open_v2(
	    path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int r = rs_err(err, rc == SQLITE_NOMEM ? -ENOMEM : -EIO, "open %s: %s", path,
			       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return r;
	}
	int r = db_setup(db, err);
	if (r < 0) {
		rs_error_prefix(err, "%s", path);
		sqlite3_close(db);
		return r;
	}
	*out = db;
	return 0;
}

void snap_db_close(sqlite3 *db)
{
	if (db && sqlite3_close(db) != SQLITE_OK)
		rs_log(RS_LOG_WARN, "snapshot: closing metadata.db: %s", sqlite3_errmsg(db));
}

int snap_db_begin(sqlite3 *db, bool write, struct rs_error *err)
{
	return exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", "begin transaction", err);
}

int snap_db_commit(sqlite3 *db, struct rs_error *err)
{
	int r = exec(db, "COMMIT", "commit transaction", err);
	if (r < 0)
		snap_db_rollback(db);
	return r;
}

void snap_db_rollback(sqlite3 *db)
{
	if (sqlite3_get_autocommit(db))
		return;
	if (sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
		rs_log(RS_LOG_WARN, "snapshot: rollback: %s", sqlite3_errmsg(db));
}

void snap_row_free(struct snap_row *r)
{
	if (!r)
		return;
	free(r->key);
	free(r->parent);
	memset(r, 0, sizeof(*r));
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? strdup((const char *)t) : NULL;
}

static int read_row(sqlite3_stmt *st, struct snap_row *r)
{
	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(st, 0);
	r->key = col_dup(st, 1);
	r->parent_id = sqlite3_column_int64(st, 2);
	if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
		r->parent = col_dup(st, 3);
		if (!r->parent) {
			snap_row_free(r);
			return -ENOMEM;
		}
	}
	r->kind = (enum snap_kind)sqlite3_column_int(st, 4);
	r->created = sqlite3_column_int64(st, 5);
	r->updated = sqlite3_column_int64(st, 6);
	r->size = sqlite3_column_int64(st, 7);
	r->inodes = sqlite3_column_int64(st, 8);
	if (!r->key) {
		snap_row_free(r);
		return -ENOMEM;
	}
	return 0;
}

/* Reads the one row st selects: -ENOENT when none. */
static int get_one(sqlite3 *db, sqlite3_stmt *st, struct snap_row *r, struct rs_error *err)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_err(db, rc, "read snapshot", err);
	if (read_row(st, r) < 0)
		return rs_err(err, -ENOMEM, "out of memory");
	return 0;
}

int snap_db_get(sqlite3 *db, const char *key, struct snap_row *r, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int ret = prep(db, ROW_SELECT "WHERE s.key = ?1", &st, err);
	if (ret < 0)
		return ret;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	ret = get_one(db, st, r, err);
	if (ret == -ENOENT)
		return rs_err(err, -ENOENT, "snapshot %s: not found", key);
	return ret;
}

int snap_db_get_id(sqlite3 *db, int64_t id, struct snap_row *r, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int ret = prep(db, ROW_SELECT "WHERE s.id = ?1", &st, err);
	if (ret < 0)
		return ret;
	sqlite3_bind_int64(st, 1, id);
	ret = get_one(db, st, r, err);
	if (ret == -ENOENT)
		return rs_err(err, -ENOENT, "snapshot id %lld: not found", (long long)id);
	return ret;
}

int snap_db_exists(sqlite3 *db, const char *key, bool *exists, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "SELECT 1 FROM snapshots WHERE key = ?1", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(db, rc, "look up snapshot", err);
	*exists = rc == SQLITE_ROW;
	return 0;
}

/* Reads the labels st yields (columns key, value) into a new array. */
static int read_labels(sqlite3 *db, sqlite3_stmt *st, struct snap_label **out, size_t *n,
		       struct rs_error *err)
{
	struct snap_label *v = NULL;
	size_t len = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct snap_label *nv = realloc(v, ncap * sizeof(*v));
			if (!nv)
				goto nomem;
			v = nv;
			cap = ncap;
		}
		v[len].key = col_dup(st, 0);
		v[len].value = col_dup(st, 1);
		len++;
		if (!v[len - 1].key || !v[len - 1].value)
			goto nomem;
	}
	if (rc != SQLITE_DONE) {
		snap_labels_free(v, len);
		return db_err(db, rc, "read labels", err);
	}
	*out = v;
	*n = len;
	return 0;
nomem:
	snap_labels_free(v, len);
	return rs_err(err, -ENOMEM, "out of memory");
}

int snap_db_labels(sqlite3 *db, int64_t id, struct snap_label **out, size_t *n,
		   struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r =
	    prep(db, "SELECT key, value FROM labels WHERE snapshot_id = ?1 ORDER BY key", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	return read_labels(db, st, out, n, err);
}

int snap_db_has_label(sqlite3 *db, int64_t id, const char *key, bool *has, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "SELECT 1 FROM labels WHERE snapshot_id = ?1 AND key = ?2", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(db, rc, "read labels", err);
	*has = rc == SQLITE_ROW;
	return 0;
}

static int put_label(sqlite3 *db, sqlite3_stmt *st, const struct snap_label *l,
		     struct rs_error *err)
{
	sqlite3_reset(st);
	sqlite3_bind_text(st, 2, l->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, l->value ? l->value : "", -1, SQLITE_STATIC);
	return step_done(db, st, "write label", err);
}

int snap_db_set_labels(sqlite3 *db, int64_t id, const struct snap_label *l, size_t n,
		       const struct snap_label *extra, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *del = NULL;
	cleanup_stmt sqlite3_stmt *put = NULL;
	int r = prep(db, "DELETE FROM labels WHERE snapshot_id = ?1", &del, err);
	if (r == 0)
		r = prep(
		    db,
		    "INSERT OR REPLACE INTO labels (snapshot_id, key, value) VALUES (?1, ?2, ?3)",
		    &put, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(del, 1, id);
	r = step_done(db, del, "clear labels", err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(put, 1, id);
	for (size_t i = 0; i < n && r == 0; i++)
		r = put_label(db, put, &l[i], err);
	if (r == 0 && extra)
		r = put_label(db, put, extra, err);
	if (r < 0)
		return r;
	/* containerd stores no zero-value labels: a later "" removes the key. */
	cleanup_stmt sqlite3_stmt *drop = NULL;
	r = prep(db, "DELETE FROM labels WHERE snapshot_id = ?1 AND value = ''", &drop, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(drop, 1, id);
	return step_done(db, drop, "drop empty labels", err);
}

int snap_db_reserve_id(sqlite3 *db, int64_t *id, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r =
	    prep(db, "UPDATE meta SET value = value + 1 WHERE name = 'next_id' RETURNING value - 1",
		 &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_err(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "reserve id", err);
	*id = sqlite3_column_int64(st, 0);
	return step_done(db, st, "reserve id", err);
}

int snap_db_insert(sqlite3 *db, const struct snap_row *row, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r =
	    prep(db,
		 "INSERT INTO snapshots (id, key, parent_id, kind, created, updated, size, inodes)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		 &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, row->id);
	sqlite3_bind_text(st, 2, row->key, -1, SQLITE_STATIC);
	if (row->parent_id)
		sqlite3_bind_int64(st, 3, row->parent_id);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_int(st, 4, (int)row->kind);
	sqlite3_bind_int64(st, 5, row->created);
	sqlite3_bind_int64(st, 6, row->updated);
	sqlite3_bind_int64(st, 7, row->size);
	sqlite3_bind_int64(st, 8, row->inodes);
	r = step_done(db, st, "insert snapshot", err);
	if (r == -EEXIST)
		return rs_err(err, -EEXIST, "snapshot %s: already exists", row->key);
	return r;
}

int snap_db_delete(sqlite3 *db, int64_t id, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "DELETE FROM snapshots WHERE id = ?1", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	return step_done(db, st, "delete snapshot", err);
}

int snap_db_has_children(sqlite3 *db, int64_t id, bool *has, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "SELECT 1 FROM snapshots WHERE parent_id = ?1 LIMIT 1", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(db, rc, "look up children", err);
	*has = rc == SQLITE_ROW;
	return 0;
}

int snap_db_commit_active(sqlite3 *db, int64_t id, const char *name, int64_t now, int64_t size,
			  int64_t inodes, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db,
		     "UPDATE snapshots SET key = ?2, kind = 3, created = ?3, updated = ?3,"
		     " size = ?4, inodes = ?5 WHERE id = ?1",
		     &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, size);
	sqlite3_bind_int64(st, 5, inodes);
	r = step_done(db, st, "commit snapshot", err);
	if (r == -EEXIST)
		return rs_err(err, -EEXIST, "committed snapshot %s: already exists", name);
	return r;
}

int snap_db_touch(sqlite3 *db, int64_t id, int64_t updated, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "UPDATE snapshots SET updated = ?2 WHERE id = ?1", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, updated);
	return step_done(db, st, "update snapshot", err);
}

int snap_db_chain(sqlite3 *db, int64_t parent_id, int64_t **ids, size_t *n, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	cleanup_free int64_t *v = NULL;
	size_t len = 0, cap = 0;
	*ids = NULL;
	*n = 0;
	if (!parent_id)
		return 0;
	int r = prep(db, "SELECT parent_id FROM snapshots WHERE id = ?1", &st, err);
	if (r < 0)
		return r;
	for (int64_t id = parent_id; id;) {
		if (len == CHAIN_MAX)
			return rs_err(err, -ELOOP, "metadata.db: parent chain of %lld too long",
				      (long long)parent_id);
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			int64_t *nv = realloc(v, ncap * sizeof(*v));
			if (!nv)
				return rs_err(err, -ENOMEM, "out of memory");
			v = nv;
			cap = ncap;
		}
		v[len++] = id;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, id);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return rs_err(err, -ENOENT, "metadata.db: missing parent %lld",
				      (long long)id);
		if (rc != SQLITE_ROW)
			return db_err(db, rc, "read parent chain", err);
		id = sqlite3_column_int64(st, 0);
	}
	*ids = steal_pointer(&v);
	*n = len;
	return 0;
}

static int each(sqlite3 *db, sqlite3_stmt *st, bool with_labels, snap_db_row_fn fn, void *ctx,
		struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *lst = NULL;
	int r = 0, rc;
	if (with_labels) {
		r = prep(db, "SELECT key, value FROM labels WHERE snapshot_id = ?1 ORDER BY key",
			 &lst, err);
		if (r < 0)
			return r;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct snap_row row;
		struct snap_label *l = NULL;
		size_t nl = 0;
		if (read_row(st, &row) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
		if (with_labels) {
			sqlite3_reset(lst);
			sqlite3_bind_int64(lst, 1, row.id);
			r = read_labels(db, lst, &l, &nl, err);
		}
		if (r == 0)
			r = fn(ctx, &row, l, nl);
		snap_labels_free(l, nl);
		snap_row_free(&row);
		if (r != 0)
			return r;
	}
	if (rc != SQLITE_DONE)
		return db_err(db, rc, "list snapshots", err);
	return 0;
}

int snap_db_each(sqlite3 *db, bool with_labels, snap_db_row_fn fn, void *ctx, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, ROW_SELECT "ORDER BY s.key", &st, err);
	if (r < 0)
		return r;
	return each(db, st, with_labels, fn, ctx, err);
}

int snap_db_each_labelled(sqlite3 *db, const char *label, snap_db_row_fn fn, void *ctx,
			  struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db,
		     ROW_SELECT "WHERE EXISTS (SELECT 1 FROM labels l"
				" WHERE l.snapshot_id = s.id AND l.key = ?1) ORDER BY s.id",
		     &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
	return each(db, st, true, fn, ctx, err);
}

int snap_db_bump_id(sqlite3 *db, int64_t min_next, struct rs_error *err)
{
	cleanup_stmt sqlite3_stmt *st = NULL;
	int r = prep(db, "UPDATE meta SET value = max(value, ?1) WHERE name = 'next_id'", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, min_next);
	return step_done(db, st, "bump id counter", err);
}
