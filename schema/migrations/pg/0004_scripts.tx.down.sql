DROP TABLE risk_rules;
DROP TABLE script_versions;
DROP TABLE scripts;
