-- Version 10: running totals of agents by status and model, for the list's meta and
-- pagination total without counting every agent; filled from the agents already stored.

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
