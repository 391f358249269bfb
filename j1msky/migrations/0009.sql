-- Version 9: running totals of agents by status and model, for the list's meta and
-- pagination total without counting every agent; filled from the agents already stored.
-- The list's indexes also hold model and actual_micros, so a filtered list's meta is read
-- from the index; the two covering indexes that served the unfiltered meta go.

DROP INDEX agents_rollup;
DROP INDEX agents_model_cost;
DROP INDEX agents_created;
CREATE INDEX agents_created ON agents (created_at, model, actual_micros);
DROP INDEX agents_status_created;
CREATE INDEX agents_status_created ON agents (status, created_at, model, actual_micros);
DROP INDEX agents_model_created;
CREATE INDEX agents_model_created ON agents (model, created_at, actual_micros);
DROP INDEX agents_team_created;
CREATE INDEX agents_team_created ON agents (team, created_at, model, actual_micros);
DROP INDEX agents_cost;
CREATE INDEX agents_cost ON agents (actual_micros, model);

CREATE TABLE agent_totals (
    status        TEXT NOT NULL,
    model         TEXT NOT NULL,
    agents        INTEGER NOT NULL,
    actual_micros INTEGER NOT NULL,
    PRIMARY KEY (status, model)
) WITHOUT ROWID;
INSERT INTO agent_totals (status, model, agents, actual_micros)
SELECT status, model, count(*), sum(actual_micros) FROM agents GROUP BY status, model;
CREATE TRIGGER agent_totals_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agent_totals (status, model, agents, actual_micros)
    VALUES (new.status, new.model, 1, new.actual_micros)
    ON CONFLICT (status, model) DO UPDATE SET agents = agents + 1,
        actual_micros = actual_micros + excluded.actual_micros;
END;
CREATE TRIGGER agent_totals_update AFTER UPDATE OF status, model, actual_micros ON agents
WHEN old.status IS NOT new.status OR old.model IS NOT new.model
     OR old.actual_micros IS NOT new.actual_micros BEGIN
    UPDATE agent_totals SET agents = agents - 1, actual_micros = actual_micros - old.actual_micros
    WHERE status = old.status AND model = old.model;
    INSERT INTO agent_totals (status, model, agents, actual_micros)
    VALUES (new.status, new.model, 1, new.actual_micros)
    ON CONFLICT (status, model) DO UPDATE SET agents = agents + 1,
        actual_micros = actual_micros + excluded.actual_micros;
END;
CREATE TRIGGER agent_totals_delete AFTER DELETE ON agents BEGIN
    UPDATE agent_totals SET agents = agents - 1, actual_micros = actual_micros - old.actual_micros
    WHERE status = old.status AND model = old.model;
END;
