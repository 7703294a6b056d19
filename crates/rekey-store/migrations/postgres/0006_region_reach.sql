-- Blast radius at region grain. A scope such as `region:uk,us` used to store one
-- incident_tenants row per tenant of those regions (tens of thousands at scale); it is now one
-- incident_regions row per region, and its tenants are the region's tenants (a tenant's region
-- never changes). A tenant of a covered region that some other selector also reaches keeps its
-- incident_tenants row, marked whole, with every reason bit; readers take the region grain for
-- the tenants of covered regions and the tenant grain for the others.
CREATE TABLE incident_regions (
    incident_id TEXT NOT NULL,
    region TEXT NOT NULL,
    reasons BIGINT NOT NULL,
    PRIMARY KEY (incident_id, region)
);

-- Live credentials per tenant and kind, kept by every write that creates or deletes one, so that
-- a region's blast radius is counted without visiting its credentials. Keyed by region first, so
-- a region's rows are read as one range.
CREATE TABLE tenant_counts (
    tenant_id TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    region TEXT NOT NULL,
    kind TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (region, tenant_id, kind)
);

INSERT INTO tenant_counts (tenant_id, tenant_name, region, kind, n)
SELECT c.tenant_id, t.name, t.region, c.kind, COUNT(*) FROM credentials c JOIN tenants t ON t.id = c.tenant_id
WHERE c.deleted_at IS NULL GROUP BY c.tenant_id, t.name, t.region, c.kind;

-- Credentials created after an incident opened are outside its reach; counting finds them here.
CREATE INDEX credentials_created ON credentials (created_at) WHERE deleted_at IS NULL;

-- Staging a put looks up the current, previous and pending versions of one credential: index
-- those only, so the lookup does not grow with the retired versions a credential accumulates.
DROP INDEX credential_versions_stage;
CREATE INDEX credential_versions_live ON credential_versions (credential_id, stage) WHERE stage <> 'retired';
