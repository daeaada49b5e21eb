-- Which order lines (and how many units) a shipment carries, and whose they are: a seller ships
-- their own lines of an order; an order with several sellers has several shipments.
CREATE TABLE IF NOT EXISTS shipment_lines (
    shipment_id   bigint  NOT NULL REFERENCES shipments(id),
    order_item_id bigint  NOT NULL REFERENCES order_items(id),
    seller_id     bigint  NOT NULL,
    quantity      integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, order_item_id)
);
CREATE INDEX IF NOT EXISTS shipment_lines_item ON shipment_lines (order_item_id);
CREATE INDEX IF NOT EXISTS shipment_lines_seller ON shipment_lines (seller_id, shipment_id);
-- a seller's order list: their products' order lines
CREATE INDEX IF NOT EXISTS order_items_sku ON order_items (sku);
