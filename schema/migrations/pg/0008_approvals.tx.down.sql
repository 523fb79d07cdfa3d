DROP TABLE user_groups;
DROP TABLE approval_links;
DROP TABLE chat_identities;
DROP TABLE approval_delegations;
DROP TABLE approval_decisions;
DROP TABLE approval_ticket_approvers;
DROP TABLE approval_tickets;
DROP TABLE approval_policies;
