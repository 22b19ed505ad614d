-- The platform permission catalog and the system platform roles.

INSERT INTO platform_permissions (code, description)
SELECT r || '.' || a || '.' || s,
       initcap(a) || ' ' || replace(r, '_', ' ') || ' (' || s || ' scope)'
  FROM unnest(ARRAY['tenants', 'organizations', 'regions', 'databases', 'migrations',
                    'platform_users', 'platform_roles', 'rbac', 'audit']) AS r,
       unnest(ARRAY['read', 'create', 'update', 'delete', 'write']) AS a,
       unnest(ARRAY['user', 'tenant', 'platform']) AS s;
INSERT INTO platform_permissions (code, description) VALUES
    ('*.*.*',        'Everything on the platform'),
    ('*.read.*',     'Read everything at any scope'),
    ('*.read.platform', 'Read everything, platform scope'),
    ('*.read.tenant',   'Read everything, tenant scope'),
    ('*.*.tenant',   'Every action, tenant scope');
INSERT INTO platform_permissions (code, description)
SELECT r || '.*.' || s, 'Every action on ' || replace(r, '_', ' ') || ' (' || s || ' scope)'
  FROM unnest(ARRAY['tenants', 'organizations', 'regions', 'databases', 'migrations',
                    'platform_users', 'platform_roles', 'rbac', 'audit']) AS r,
       unnest(ARRAY['user', 'tenant', 'platform', '*']) AS s;

INSERT INTO platform_roles (code, name, is_system, description) VALUES
    ('system_admin', 'System administrator', true, 'Everything on the platform'),
    ('tenant_admin', 'Tenant administrator', true, 'Manages the tenants it is restricted to'),
    ('support',      'Support',              true, 'Reads everything, changes nothing'),
    ('viewer',       'Viewer',               true, 'Reads tenants, regions and organizations');

INSERT INTO platform_role_permissions (role_id, permission_id)
SELECT r.id, p.id
  FROM (VALUES
        ('system_admin', '*.*.*'),
        ('tenant_admin', 'tenants.read.tenant'), ('tenant_admin', 'tenants.update.tenant'),
        ('tenant_admin', 'rbac.*.tenant'), ('tenant_admin', 'audit.read.tenant'),
        ('tenant_admin', 'migrations.read.tenant'), ('tenant_admin', 'migrations.write.tenant'),
        ('support',      '*.read.platform'),
        ('viewer',       'tenants.read.platform'), ('viewer', 'regions.read.platform'),
        ('viewer',       'organizations.read.platform')
       ) AS v (role, code)
  JOIN platform_roles r ON r.code = v.role
  JOIN platform_permissions p ON p.code = v.code;
