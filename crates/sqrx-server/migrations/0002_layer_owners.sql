-- Layers a user uploaded: visible to that user (and admins) only. Layers without a row are
-- shared (the base layer, what the operator built or uploaded).
CREATE TABLE layer_owners (
    layer TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
