-- The AuthZEN interop Todo scenario as a neoauthz tenant (run on the tenant's schema, which
-- is the search_path). The seeded roles admin and viewer are reset to the scenario's.
DELETE FROM role_inherits WHERE role_id IN (SELECT id FROM roles WHERE code IN ('admin', 'viewer'))
   OR inherited_role_id IN (SELECT id FROM roles WHERE code IN ('admin', 'viewer'));
DELETE FROM role_permissions WHERE role_id IN (SELECT id FROM roles WHERE code IN ('admin', 'viewer'));
INSERT INTO roles (code, name, level) VALUES ('editor', 'Editor', 'member'), ('evil_genius', 'Evil genius', 'member');
INSERT INTO permissions (code) VALUES ('todos.read.tenant'), ('todos.create.tenant'),
    ('todos.update.own'), ('todos.update.tenant'), ('todos.delete.own'), ('todos.delete.tenant');
INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id FROM (VALUES
    ('viewer', 'users.read.tenant'), ('viewer', 'todos.read.tenant'),
    ('editor', 'todos.create.tenant'), ('editor', 'todos.update.own'), ('editor', 'todos.delete.own'),
    ('admin', 'todos.delete.tenant'),
    ('evil_genius', 'todos.update.tenant')) AS v (role, perm)
  JOIN roles r ON r.code = v.role JOIN permissions p ON p.code = v.perm;
INSERT INTO role_inherits (role_id, inherited_role_id)
SELECT r.id, i.id FROM (VALUES ('editor', 'viewer'), ('admin', 'editor'), ('evil_genius', 'editor')) AS v (role, inherited)
  JOIN roles r ON r.code = v.role JOIN roles i ON i.code = v.inherited;
INSERT INTO users (external_id, email, display_name) VALUES
    ('CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs', 'rick@the-citadel.com', 'Rick Sanchez'),
    ('CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs', 'morty@the-citadel.com', 'Morty Smith'),
    ('CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs', 'summer@the-smiths.com', 'Summer Smith'),
    ('CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs', 'beth@the-smiths.com', 'Beth Smith'),
    ('CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs', 'jerry@the-smiths.com', 'Jerry Smith');
INSERT INTO user_roles (user_id, role_id)
SELECT u.id, r.id FROM (VALUES
    ('rick@the-citadel.com', 'admin'), ('rick@the-citadel.com', 'evil_genius'),
    ('morty@the-citadel.com', 'editor'), ('summer@the-smiths.com', 'editor'),
    ('beth@the-smiths.com', 'viewer'), ('jerry@the-smiths.com', 'viewer')) AS v (email, role)
  JOIN users u ON u.email = v.email JOIN roles r ON r.code = v.role;
