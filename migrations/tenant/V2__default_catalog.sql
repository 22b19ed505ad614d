-- The default permission catalog and the system roles every new tenant starts with.

INSERT INTO permissions (code, description)
SELECT r || '.' || a || '.' || s,
       initcap(a) || ' ' || replace(r, '_', ' ') || ' (' || s || ' scope)'
  FROM unnest(ARRAY['users', 'teams', 'roles', 'permissions', 'settings', 'projects',
                    'documents', 'reports', 'billing', 'audit', 'api_keys']) AS r,
       unnest(ARRAY['read', 'create', 'update', 'delete']) AS a,
       unnest(ARRAY['own', 'team', 'tenant']) AS s;

-- Patterns that roles and direct permissions may grant or deny.
INSERT INTO permissions (code, description) VALUES
    ('*.*.*',      'Everything'),
    ('*.*.tenant', 'Every action on every resource, tenant scope'),
    ('*.*.team',   'Every action on every resource, team scope'),
    ('*.*.own',    'Every action on every resource, own scope'),
    ('*.read.*',   'Read every resource at any scope'),
    ('*.read.tenant', 'Read every resource, tenant scope'),
    ('*.read.team',   'Read every resource, team scope'),
    ('*.read.own',    'Read every resource, own scope');
INSERT INTO permissions (code, description)
SELECT r || '.*.' || s, 'Every action on ' || replace(r, '_', ' ') || ' (' || s || ' scope)'
  FROM unnest(ARRAY['users', 'teams', 'roles', 'permissions', 'settings', 'projects',
                    'documents', 'reports', 'billing', 'audit', 'api_keys']) AS r,
       unnest(ARRAY['own', 'team', 'tenant', '*']) AS s;

INSERT INTO roles (code, name, level, is_system, description) VALUES
    ('owner',   'Owner',   'owner',   true, 'Everything in the tenant'),
    ('admin',   'Admin',   'admin',   true, 'Manages users, teams, roles and settings of the tenant'),
    ('manager', 'Manager', 'manager', true, 'Manages the work of their teams'),
    ('member',  'Member',  'member',  true, 'Works on their own and their teams'' projects'),
    ('viewer',  'Viewer',  'viewer',  true, 'Reads what their teams hold'),
    ('guest',   'Guest',   'guest',   true, 'Reads their own items');

-- Inheritance: admin > manager > member > viewer > guest (owner holds everything directly).
INSERT INTO role_inherits (role_id, inherited_role_id)
SELECT r.id, i.id
  FROM (VALUES ('admin', 'manager'), ('manager', 'member'), ('member', 'viewer'), ('viewer', 'guest')) AS v (role, inherited)
  JOIN roles r ON r.code = v.role
  JOIN roles i ON i.code = v.inherited;

INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id
  FROM (VALUES
        ('owner',   '*.*.*'),
        ('admin',   'users.*.tenant'), ('admin', 'teams.*.tenant'), ('admin', 'roles.*.tenant'),
        ('admin',   'permissions.read.tenant'), ('admin', 'settings.*.tenant'), ('admin', 'projects.*.tenant'),
        ('admin',   'documents.*.tenant'), ('admin', 'reports.*.tenant'), ('admin', 'audit.read.tenant'),
        ('admin',   'api_keys.*.tenant'),
        ('manager', 'projects.*.team'), ('manager', 'documents.*.team'), ('manager', 'reports.read.team'),
        ('manager', 'users.read.team'), ('manager', 'teams.read.team'), ('manager', 'teams.update.team'),
        ('member',  'projects.create.own'), ('member', 'projects.update.own'), ('member', 'documents.*.own'),
        ('member',  'reports.read.own'), ('member', 'api_keys.*.own'),
        ('viewer',  'projects.read.team'), ('viewer', 'documents.read.team'), ('viewer', 'reports.read.team'),
        ('viewer',  'users.read.team'), ('viewer', 'teams.read.team'),
        ('guest',   'projects.read.own'), ('guest', 'documents.read.own')
       ) AS v (role, code)
  JOIN roles r ON r.code = v.role
  JOIN permissions p ON p.code = v.code;
