-- Runs last: nothing in the governance schema is executable by PUBLIC; each file grants
-- EXECUTE on its own functions to the roles that need them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA governance FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA governance FROM PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA governance TO governance_auditor;
