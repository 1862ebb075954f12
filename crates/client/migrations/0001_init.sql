-- One row per Onramp instance the client is enrolled in (PROTOCOL.md InstanceInfo).
CREATE TABLE instances (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    proxy_url TEXT NOT NULL,
    -- the edge URL this client reached the instance through (polled for updates)
    edge_url TEXT NOT NULL,
    username TEXT NOT NULL,
    polling_token TEXT,
    disable_all_traffic INTEGER NOT NULL DEFAULT 0,
    enterprise_enabled INTEGER NOT NULL DEFAULT 0,
    client_traffic_policy INTEGER,
    device_id INTEGER NOT NULL,
    device_name TEXT NOT NULL,
    pubkey TEXT NOT NULL,
    -- 'ok', 'needs_token' (401/403 on poll), 'stopped' (402)
    sync_state TEXT NOT NULL DEFAULT 'ok',
    last_sync_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every field of DeviceConfig, per instance.
CREATE TABLE locations (
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    network_id INTEGER NOT NULL,
    network_name TEXT NOT NULL,
    config TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    assigned_ip TEXT NOT NULL,
    pubkey TEXT NOT NULL,
    allowed_ips TEXT NOT NULL,
    dns TEXT,
    mfa_enabled INTEGER NOT NULL,
    keepalive_interval INTEGER NOT NULL,
    location_mfa_mode INTEGER,
    service_location_mode INTEGER,
    PRIMARY KEY (instance_id, network_id)
);

-- WireGuard key pairs made on this machine. A pair is saved before its public key is sent,
-- so a crash after the server registered the device cannot lose the private key.
CREATE TABLE keys (
    pubkey TEXT PRIMARY KEY NOT NULL,
    private_key TEXT NOT NULL,
    -- the edge URL the key was made for, until it belongs to an instance
    enrollment_url TEXT NOT NULL,
    instance_id TEXT REFERENCES instances(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
