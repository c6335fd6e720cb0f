-- tablechat demo database: "Northwind Outfitters", a fictional retail chain.
--
-- Builds regions, stores, categories, products, customers, orders and order_items for
-- 2022-01-01 .. 2024-12-31. Fully deterministic: every "random" choice comes from an integer
-- hash of a row number and a fixed salt (the macros _mix/_u below), never from random(), so the
-- same rows come out on every run, machine and DuckDB version. Run it as one script on a fresh
-- database: con.execute(open("build.sql").read()).
--
-- Shape of the data, so questions have interesting answers:
--   * customer ids follow signup order; an order only goes to a customer who had signed up;
--   * orders grow year on year, peak in November (Black Friday week) and December, dip in
--     January/February, and are busier at weekends;
--   * an order goes to a store that was open on the order date, usually in the customer's city
--     (in-store orders) or region (online and phone orders, fulfilled by a store);
--   * "shipped" orders are the last two weeks' orders still in transit;
--   * a few products sell far more than others; order_items.unit_price is the price charged at
--   the time (list prices rose between 2022 and 2024); discounts are deeper in Black Friday week
--   and for Corporate customers.

-- ---------------------------------------------------------------------------------------------
-- Deterministic pseudo-randomness: a 32-bit integer hash (two multiply-xorshift rounds).
-- _u(salt, i) is uniform in [0, 1) and identical on every run. Skewed draws use u * u rather
-- than pow(), whose last bit may differ between C libraries; + - * / are exact IEEE everywhere.
CREATE OR REPLACE TEMP MACRO _mix(x) AS (xor(x >> 16, x) * 73244475) % 4294967296;
CREATE OR REPLACE TEMP MACRO _fin(x) AS xor(x >> 16, x);
CREATE OR REPLACE TEMP MACRO _u(salt, i) AS
    _fin(_mix(_mix((CAST(i AS BIGINT) * 2654435761 + CAST(salt AS BIGINT) * 40503) % 4294967296)))
    / 4294967296.0;

-- ---------------------------------------------------------------------------------------------
CREATE TABLE regions (
    id   INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE
);
INSERT INTO regions VALUES
    (1, 'Europe'), (2, 'North America'), (3, 'Asia Pacific'), (4, 'Latin America'),
    (5, 'Middle East & Africa');

-- ---------------------------------------------------------------------------------------------
CREATE TABLE stores (
    id        INTEGER PRIMARY KEY,
    name      VARCHAR NOT NULL UNIQUE,
    city      VARCHAR NOT NULL,
    region_id INTEGER NOT NULL REFERENCES regions (id),
    opened_on DATE NOT NULL
);
INSERT INTO stores VALUES
    ( 1, 'Berlin Mitte',                'Berlin',        1, DATE '2014-03-15'),
    ( 2, 'Munich Marienplatz',          'Munich',        1, DATE '2016-09-01'),
    ( 3, 'London Oxford Street',        'London',        1, DATE '2012-05-20'),
    ( 4, 'London Canary Wharf',         'London',        1, DATE '2019-02-11'),
    ( 5, 'Manchester Arndale',          'Manchester',    1, DATE '2022-11-05'),
    ( 6, 'Paris Rivoli',                'Paris',         1, DATE '2013-04-02'),
    ( 7, 'Lyon Part-Dieu',              'Lyon',          1, DATE '2018-10-13'),
    ( 8, 'Madrid Gran Via',             'Madrid',        1, DATE '2015-06-27'),
    ( 9, 'Barcelona Diagonal',          'Barcelona',     1, DATE '2017-03-18'),
    (10, 'Rome Termini',                'Rome',          1, DATE '2016-11-30'),
    (11, 'Milan Duomo',                 'Milan',         1, DATE '2015-02-14'),
    (12, 'Amsterdam Kalverstraat',      'Amsterdam',     1, DATE '2018-05-05'),
    (13, 'New York Fifth Avenue',       'New York',      2, DATE '2011-09-09'),
    (14, 'New York Brooklyn',           'New York',      2, DATE '2020-08-22'),
    (15, 'Chicago Michigan Avenue',     'Chicago',       2, DATE '2013-07-01'),
    (16, 'Los Angeles Downtown',        'Los Angeles',   2, DATE '2014-12-06'),
    (17, 'Houston Galleria',            'Houston',       2, DATE '2017-04-15'),
    (18, 'Seattle Pike Place',          'Seattle',       2, DATE '2016-03-12'),
    (19, 'Boston Back Bay',             'Boston',        2, DATE '2015-10-24'),
    (20, 'San Francisco Union Square',  'San Francisco', 2, DATE '2012-11-17'),
    (21, 'Toronto Eaton Centre',        'Toronto',       2, DATE '2014-05-31'),
    (22, 'Vancouver Robson Street',     'Vancouver',     2, DATE '2019-06-08'),
    (23, 'Montreal Sainte-Catherine',   'Montreal',      2, DATE '2022-04-01'),
    (24, 'Tokyo Shibuya',               'Tokyo',         3, DATE '2013-10-10'),
    (25, 'Osaka Umeda',                 'Osaka',         3, DATE '2023-06-10'),
    (26, 'Singapore Orchard Road',      'Singapore',     3, DATE '2015-08-08'),
    (27, 'Sydney George Street',        'Sydney',        3, DATE '2014-01-25'),
    (28, 'Melbourne Bourke Street',     'Melbourne',     3, DATE '2018-07-14'),
    (29, 'Seoul Gangnam',               'Seoul',         3, DATE '2017-12-02'),
    (30, 'Mumbai Bandra',               'Mumbai',        3, DATE '2020-02-29'),
    (31, 'Shanghai Nanjing Road',       'Shanghai',      3, DATE '2016-06-18'),
    (32, 'São Paulo Paulista',          'São Paulo',     4, DATE '2015-03-21'),
    (33, 'Buenos Aires Florida',        'Buenos Aires',  4, DATE '2017-09-09'),
    (34, 'Mexico City Polanco',         'Mexico City',   4, DATE '2016-04-30'),
    (35, 'Santiago Providencia',        'Santiago',      4, DATE '2019-11-16'),
    (36, 'Bogotá Andino',               'Bogotá',        4, DATE '2022-09-15'),
    (37, 'Dubai Mall',                  'Dubai',         5, DATE '2016-01-20'),
    (38, 'Johannesburg Sandton',        'Johannesburg',  5, DATE '2018-03-03'),
    (39, 'Cairo Zamalek',               'Cairo',         5, DATE '2020-10-10'),
    (40, 'Riyadh Olaya',                'Riyadh',        5, DATE '2023-03-01');

-- ---------------------------------------------------------------------------------------------
CREATE TABLE categories (
    id   INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE
);
INSERT INTO categories VALUES
    (1, 'Electronics'), (2, 'Books'), (3, 'Clothing'), (4, 'Home & Garden'), (5, 'Toys'),
    (6, 'Sports'), (7, 'Beauty'), (8, 'Grocery'), (9, 'Office Supplies'), (10, 'Automotive');

-- ---------------------------------------------------------------------------------------------
-- Products: 5 brands x 6 items in each of the 10 categories = 300 products.
CREATE TEMP TABLE _items AS SELECT * FROM (VALUES
    (1, 1, 'Wireless Headphones', 89), (1, 2, 'Bluetooth Speaker', 59), (1, 3, '4K Monitor', 329),
    (1, 4, 'Mechanical Keyboard', 99), (1, 5, 'USB-C Charger', 25), (1, 6, 'Smartwatch', 199),
    (2, 1, 'Mystery Novel', 14), (2, 2, 'Cookbook', 28), (2, 3, 'Science Fiction Novel', 16),
    (2, 4, 'Travel Guide', 22), (2, 5, 'Picture Book', 12), (2, 6, 'Business Handbook', 32),
    (3, 1, 'Denim Jacket', 79), (3, 2, 'Cotton T-Shirt', 19), (3, 3, 'Wool Sweater', 65),
    (3, 4, 'Rain Jacket', 110), (3, 5, 'Running Shorts', 29), (3, 6, 'Chino Trousers', 49),
    (4, 1, 'Ceramic Planter', 24), (4, 2, 'Garden Hose', 35), (4, 3, 'LED Desk Lamp', 39),
    (4, 4, 'Cotton Bed Sheets', 59), (4, 5, 'Cordless Drill', 129), (4, 6, 'Cast Iron Skillet', 45),
    (5, 1, 'Building Blocks Set', 49), (5, 2, 'Plush Bear', 19), (5, 3, 'Remote Control Car', 69),
    (5, 4, 'Jigsaw Puzzle', 24), (5, 5, 'Board Game', 34), (5, 6, 'Science Kit', 39),
    (6, 1, 'Yoga Mat', 29), (6, 2, 'Running Shoes', 119), (6, 3, 'Tennis Racket', 149),
    (6, 4, 'Football', 25), (6, 5, 'Dumbbell Set', 89), (6, 6, 'Cycling Helmet', 69),
    (7, 1, 'Face Moisturizer', 32), (7, 2, 'Shampoo', 12), (7, 3, 'Lipstick', 18),
    (7, 4, 'Eau de Parfum', 75), (7, 5, 'Sunscreen SPF 50', 16), (7, 6, 'Hair Dryer', 59),
    (8, 1, 'Organic Coffee Beans', 14), (8, 2, 'Green Tea', 7), (8, 3, 'Extra Virgin Olive Oil', 11),
    (8, 4, 'Dark Chocolate', 4), (8, 5, 'Basmati Rice', 6), (8, 6, 'Wildflower Honey', 9),
    (9, 1, 'Gel Pens 10-Pack', 9), (9, 2, 'A4 Notebook', 6), (9, 3, 'Desk Organizer', 22),
    (9, 4, 'Stapler', 14), (9, 5, 'Ergonomic Office Chair', 249), (9, 6, 'Printer Paper Ream', 8),
    (10, 1, 'Car Phone Mount', 19), (10, 2, 'Dash Camera', 89), (10, 3, 'Tire Inflator', 49),
    (10, 4, 'Car Vacuum', 45), (10, 5, 'Seat Covers', 59), (10, 6, 'Jump Starter', 99)
) v(category_id, item_no, item, base_price);

CREATE TEMP TABLE _brands AS SELECT * FROM (VALUES
    (1, 1, 'Voltix', 0.80), (1, 2, 'Nexora', 0.90), (1, 3, 'Auralink', 1.00), (1, 4, 'Pixelon', 1.15), (1, 5, 'Quantra', 1.35),
    (2, 1, 'Harbor Press', 0.85), (2, 2, 'Bluequill', 0.95), (2, 3, 'Northwind Publishing', 1.00), (2, 4, 'Lantern House', 1.10), (2, 5, 'Maplewood Editions', 1.25),
    (3, 1, 'Urbanthread', 0.80), (3, 2, 'Stitchwell', 0.90), (3, 3, 'Coastline', 1.00), (3, 4, 'Northpeak', 1.20), (3, 5, 'Linen & Loom', 1.40),
    (4, 1, 'Bloomfield', 0.85), (4, 2, 'Greenhaven', 0.95), (4, 3, 'Oakridge', 1.00), (4, 4, 'Hearthstone', 1.15), (4, 5, 'Ironleaf', 1.30),
    (5, 1, 'Funforge', 0.80), (5, 2, 'Kidora', 0.90), (5, 3, 'Playmoor', 1.00), (5, 4, 'Tinkerly', 1.10), (5, 5, 'Brightbox', 1.25),
    (6, 1, 'Apexa', 0.85), (6, 2, 'Trailbound', 0.95), (6, 3, 'Stridewell', 1.00), (6, 4, 'Velocore', 1.20), (6, 5, 'Peakform', 1.35),
    (7, 1, 'Purelle', 0.80), (7, 2, 'Botanica', 0.90), (7, 3, 'Glowra', 1.00), (7, 4, 'Velvetine', 1.20), (7, 5, 'Lumière', 1.50),
    (8, 1, 'Brookside', 0.85), (8, 2, 'Farmhouse', 0.95), (8, 3, 'Sunvale', 1.00), (8, 4, 'Goldfield', 1.15), (8, 5, 'Terra Verde', 1.30),
    (9, 1, 'Clipton', 0.80), (9, 2, 'Deskmate', 0.90), (9, 3, 'Paperwise', 1.00), (9, 4, 'Inkwell', 1.10), (9, 5, 'Officio', 1.25),
    (10, 1, 'Drivex', 0.85), (10, 2, 'Gearline', 0.95), (10, 3, 'Roadmaster', 1.00), (10, 4, 'Motorix', 1.15), (10, 5, 'Autovance', 1.30)
) v(category_id, brand_no, brand, tier);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    name        VARCHAR NOT NULL UNIQUE,
    category_id INTEGER NOT NULL REFERENCES categories (id),
    unit_price  DECIMAL(10, 2) NOT NULL,
    cost        DECIMAL(10, 2) NOT NULL
);
INSERT INTO products
SELECT id, name, category_id, unit_price,
       CAST(round(unit_price * (0.42 + 0.26 * _u(102, id)), 2) AS DECIMAL(10, 2)) AS cost
FROM (
    SELECT CAST(row_number() OVER (ORDER BY i.category_id, b.brand_no, i.item_no) AS INTEGER) AS id,
           b.brand || ' ' || i.item AS name,
           i.category_id,
           CAST(greatest(round(i.base_price * b.tier
                               * (0.9 + 0.2 * _u(101, i.category_id * 100 + b.brand_no * 10 + i.item_no)))
                         - 0.01, 0.99) AS DECIMAL(10, 2)) AS unit_price
    FROM _items i JOIN _brands b USING (category_id)
)
ORDER BY id;

-- ---------------------------------------------------------------------------------------------
-- Customers: 5000, ids in signup order (about 1500 signed up 2019-2021, the rest 2022-2024).
CREATE TEMP TABLE _cities AS SELECT * FROM (VALUES
    ('Berlin', 'Germany', 1, 9), ('Munich', 'Germany', 1, 5), ('Hamburg', 'Germany', 1, 4),
    ('London', 'United Kingdom', 1, 11), ('Manchester', 'United Kingdom', 1, 4),
    ('Paris', 'France', 1, 9), ('Lyon', 'France', 1, 3), ('Madrid', 'Spain', 1, 6),
    ('Barcelona', 'Spain', 1, 5), ('Rome', 'Italy', 1, 5), ('Milan', 'Italy', 1, 5),
    ('Amsterdam', 'Netherlands', 1, 4), ('Stockholm', 'Sweden', 1, 3), ('Vienna', 'Austria', 1, 3),
    ('Warsaw', 'Poland', 1, 3), ('Dublin', 'Ireland', 1, 2),
    ('New York', 'United States', 2, 14), ('Chicago', 'United States', 2, 7),
    ('Los Angeles', 'United States', 2, 8), ('Houston', 'United States', 2, 5),
    ('Seattle', 'United States', 2, 4), ('Boston', 'United States', 2, 4),
    ('San Francisco', 'United States', 2, 5), ('Denver', 'United States', 2, 3),
    ('Toronto', 'Canada', 2, 6), ('Vancouver', 'Canada', 2, 3), ('Montreal', 'Canada', 2, 3),
    ('Tokyo', 'Japan', 3, 6), ('Osaka', 'Japan', 3, 2), ('Singapore', 'Singapore', 3, 4),
    ('Sydney', 'Australia', 3, 4), ('Melbourne', 'Australia', 3, 3),
    ('Seoul', 'South Korea', 3, 3), ('Mumbai', 'India', 3, 3), ('Bangalore', 'India', 3, 2),
    ('Shanghai', 'China', 3, 3), ('Auckland', 'New Zealand', 3, 1),
    ('São Paulo', 'Brazil', 4, 4), ('Rio de Janeiro', 'Brazil', 4, 2),
    ('Buenos Aires', 'Argentina', 4, 3), ('Mexico City', 'Mexico', 4, 4),
    ('Guadalajara', 'Mexico', 4, 1), ('Santiago', 'Chile', 4, 2), ('Bogotá', 'Colombia', 4, 2),
    ('Lima', 'Peru', 4, 1),
    ('Dubai', 'United Arab Emirates', 5, 3), ('Riyadh', 'Saudi Arabia', 5, 2),
    ('Johannesburg', 'South Africa', 5, 2), ('Cape Town', 'South Africa', 5, 1),
    ('Cairo', 'Egypt', 5, 2), ('Lagos', 'Nigeria', 5, 1), ('Nairobi', 'Kenya', 5, 1)
) v(city, country, region_id, weight);

CREATE TEMP TABLE _city_cum AS
SELECT city, country, region_id,
       sum(weight) OVER (ORDER BY city ROWS UNBOUNDED PRECEDING) - weight AS lo,
       sum(weight) OVER (ORDER BY city ROWS UNBOUNDED PRECEDING) AS hi,
       sum(weight) OVER () AS total
FROM _cities;

CREATE TEMP TABLE _names AS SELECT
    ['James', 'Mary', 'Liam', 'Olivia', 'Noah', 'Emma', 'Lucas', 'Sophia', 'Mateo', 'Isabella',
     'Hiroshi', 'Yuki', 'Wei', 'Mei', 'Arjun', 'Priya', 'Omar', 'Fatima', 'Ahmed', 'Aisha',
     'Carlos', 'Ana', 'Diego', 'Lucía', 'Pierre', 'Camille', 'Hans', 'Greta', 'Giulia', 'Marco',
     'Sven', 'Ingrid', 'Piotr', 'Zofia', 'Kwame', 'Amara', 'Chen', 'Sakura', 'Raj', 'Leila',
     'David', 'Sarah', 'Michael', 'Emily', 'Daniel', 'Laura', 'Thomas', 'Anna', 'Jacob', 'Chloe',
     'Benjamin', 'Charlotte', 'Samuel', 'Hannah', 'Elias', 'Nora', 'Felix', 'Maya', 'Oscar', 'Zara']
        AS firsts,
    ['Smith', 'Johnson', 'Williams', 'Brown', 'Garcia', 'Martinez', 'Müller', 'Schmidt',
     'Rossi', 'Bianchi', 'Dubois', 'Martin', 'Tanaka', 'Suzuki', 'Wang', 'Li', 'Kim', 'Park',
     'Patel', 'Sharma', 'Hassan', 'Khan', 'Silva', 'Santos', 'Lopez', 'Gonzalez', 'Nowak',
     'Kowalski', 'Andersson', 'Johansson', 'Okafor', 'Mensah', 'O''Brien', 'Murphy', 'Wilson',
     'Taylor', 'Anderson', 'Moore', 'Jackson', 'White', 'Fischer', 'Weber', 'Moreau', 'Laurent',
     'Costa', 'Ferreira', 'Nguyen', 'Chen', 'Singh', 'Ali', 'Cohen', 'Novak', 'Jensen', 'Berg',
     'Walker', 'Hall', 'Young', 'King', 'Wright', 'Scott']
        AS lasts;

CREATE TEMP TABLE _cust AS
WITH base AS (
    SELECT i,
           CASE WHEN i <= 1500 THEN DATE '2019-01-01' + CAST(floor(_u(201, i) * 1096) AS INTEGER)
                ELSE DATE '2022-01-01' + CAST(floor(_u(201, i) * 1080) AS INTEGER)
           END AS signup_date,
           floor(_u(202, i) * 1000000) AS city_pick
    FROM range(1, 5001) r(i)
)
SELECT CAST(row_number() OVER (ORDER BY b.signup_date, b.i) AS INTEGER) AS id,
       b.i AS seed, b.signup_date, c.city, c.country, c.region_id
FROM base b
JOIN _city_cum c ON b.city_pick * c.total >= c.lo * 1000000 AND b.city_pick * c.total < c.hi * 1000000;

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        VARCHAR NOT NULL,
    email       VARCHAR NOT NULL UNIQUE,
    city        VARCHAR NOT NULL,
    country     VARCHAR NOT NULL,
    region_id   INTEGER NOT NULL REFERENCES regions (id),
    segment     VARCHAR NOT NULL,
    signup_date DATE NOT NULL
);
INSERT INTO customers
SELECT id, first || ' ' || last AS name,
       lower(strip_accents(first)) || '.' || lower(regexp_replace(strip_accents(last), '[^A-Za-z]', '', 'g'))
           || CAST(id AS VARCHAR) || '@'
           || (['example.com', 'example.org', 'example.net', 'mail.example.com'])[1 + CAST(floor(_u(205, seed) * 4) AS INTEGER)]
           AS email,
       city, country, region_id, segment, signup_date
FROM (
    SELECT c.*,
           n.firsts[1 + CAST(floor(_u(203, c.seed) * len(n.firsts)) AS INTEGER)] AS first,
           n.lasts[1 + CAST(floor(_u(204, c.seed) * len(n.lasts)) AS INTEGER)] AS last,
           CASE WHEN _u(206, c.seed) < 0.64 THEN 'Consumer'
                WHEN _u(206, c.seed) < 0.87 THEN 'Small Business'
                ELSE 'Corporate' END AS segment
    FROM _cust c CROSS JOIN _names n
)
ORDER BY id;

-- ---------------------------------------------------------------------------------------------
-- Orders: 40000 over 2022-01-01 .. 2024-12-31. Each day gets a share proportional to its
-- integer weight (growth x season x weekday x Black Friday x noise), ids in date order.
CREATE TEMP TABLE _days AS
SELECT CAST(d AS DATE) AS day,
       CAST((CASE year(d) WHEN 2022 THEN 100 WHEN 2023 THEN 117 ELSE 133 END)
            * ([80, 74, 90, 95, 100, 97, 93, 96, 101, 106, 124, 162])[month(d)]
            * (CASE dayofweek(d) WHEN 6 THEN 122 WHEN 0 THEN 110 ELSE 95 END)
            * (CASE WHEN month(d) = 11 AND day(d) >= 22 THEN 175 ELSE 100 END)
            * (88 + floor(_u(301, datediff('day', DATE '2022-01-01', CAST(d AS DATE))) * 25))
            AS HUGEINT) AS w
FROM range(TIMESTAMP '2022-01-01', TIMESTAMP '2025-01-01', INTERVAL 1 DAY) t(d);

CREATE TEMP TABLE _day_counts AS
SELECT day,
       CAST((cum * 40000) // total - ((cum - w) * 40000) // total AS INTEGER) AS n
FROM (
    SELECT day, w, sum(w) OVER (ORDER BY day ROWS UNBOUNDED PRECEDING) AS cum,
           sum(w) OVER () AS total
    FROM _days
);

-- customers who had signed up before each day are exactly ids 1 .. n_signed
CREATE TEMP TABLE _signed AS
SELECT d.day, (SELECT count(*) FROM _cust c WHERE c.signup_date < d.day) AS n_signed
FROM _days d;

CREATE TEMP TABLE _ord AS
SELECT CAST(row_number() OVER (ORDER BY day, k) AS INTEGER) AS id, day AS order_date
FROM (SELECT day, unnest(range(n)) AS k FROM _day_counts);

CREATE TEMP TABLE _ord2 AS
SELECT o.id, o.order_date,
       CAST(1 + floor(_u(401, o.id) * (1 + _u(401, o.id)) / 2 * s.n_signed) AS INTEGER)
           AS customer_id,
       CASE WHEN _u(402, o.id) < 0.50 + 0.04 * (year(o.order_date) - 2022) THEN 'online'
            WHEN _u(402, o.id) < 0.57 + 0.04 * (year(o.order_date) - 2022) THEN 'phone'
            ELSE 'in-store' END AS channel,
       CASE WHEN o.order_date > DATE '2024-12-17' THEN
                CASE WHEN _u(403, o.id) < 0.72 THEN 'shipped'
                     WHEN _u(403, o.id) < 0.95 THEN 'completed'
                     ELSE 'cancelled' END
            ELSE
                CASE WHEN _u(403, o.id) < 0.87 THEN 'completed'
                     WHEN _u(403, o.id) < 0.94 THEN 'cancelled'
                     ELSE 'returned' END
       END AS status
FROM _ord o JOIN _signed s ON s.day = o.order_date;

-- stores open on a day: ranked by opening date within region and within city
CREATE TEMP TABLE _store_rank AS
SELECT id, region_id, city, opened_on,
       row_number() OVER (PARTITION BY region_id ORDER BY opened_on, id) AS rk,
       row_number() OVER (PARTITION BY city ORDER BY opened_on, id) AS ck
FROM stores;

CREATE TEMP TABLE _open_region AS
SELECT d.day, r.id AS region_id, count(s.id) AS n
FROM _days d CROSS JOIN regions r
LEFT JOIN stores s ON s.region_id = r.id AND s.opened_on <= d.day
GROUP BY d.day, r.id;

CREATE TEMP TABLE _open_city AS
SELECT d.day, s.city, count(*) AS n
FROM _days d JOIN stores s ON s.opened_on <= d.day
GROUP BY d.day, s.city;

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    store_id    INTEGER NOT NULL REFERENCES stores (id),
    order_date  DATE NOT NULL,
    status      VARCHAR NOT NULL,
    channel     VARCHAR NOT NULL
);
INSERT INTO orders
SELECT o.id, o.customer_id,
       CASE WHEN cs.id IS NOT NULL
                 AND _u(404, o.id) < (CASE o.channel WHEN 'in-store' THEN 0.88 ELSE 0.40 END)
            THEN cs.id ELSE rs.id END AS store_id,
       o.order_date, o.status, o.channel
FROM _ord2 o
JOIN _cust c ON c.id = o.customer_id
JOIN _open_region orr ON orr.day = o.order_date AND orr.region_id = c.region_id
JOIN _store_rank rs ON rs.region_id = c.region_id
                   AND rs.rk = 1 + CAST(floor(_u(405, o.id) * orr.n) AS INTEGER)
LEFT JOIN _open_city oc ON oc.day = o.order_date AND oc.city = c.city
LEFT JOIN _store_rank cs ON cs.city = c.city
                        AND cs.ck = 1 + CAST(floor(_u(406, o.id) * oc.n) AS INTEGER)
ORDER BY o.id;

-- ---------------------------------------------------------------------------------------------
-- Order lines: 1-6 per order (mean ~2.75), popular products picked more often, one line per
-- product per order.
CREATE TEMP TABLE _lines AS
SELECT o.id AS order_id, o.order_date, c.segment, k AS line,
       CAST((floor(300 * (CASE WHEN _u(509, o.id * 8 + k) < 0.55
                                  THEN _u(501, o.id * 8 + k) * _u(501, o.id * 8 + k)
                                  ELSE _u(501, o.id * 8 + k) END)) * 97 + 41) % 300 + 1 AS INTEGER)
           AS product_id
FROM (
    SELECT id, order_date, customer_id,
           unnest(range(CASE WHEN _u(500, id) < 0.25 THEN 1
                             WHEN _u(500, id) < 0.50 THEN 2
                             WHEN _u(500, id) < 0.70 THEN 3
                             WHEN _u(500, id) < 0.85 THEN 4
                             WHEN _u(500, id) < 0.95 THEN 5
                             ELSE 6 END)) AS k
    FROM orders
) o
JOIN customers c ON c.id = o.customer_id;

CREATE TABLE order_items (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity   INTEGER NOT NULL,
    unit_price DECIMAL(10, 2) NOT NULL,
    discount   DECIMAL(4, 2) NOT NULL
);
INSERT INTO order_items
SELECT CAST(row_number() OVER (ORDER BY l.order_id, l.line) AS INTEGER) AS id,
       l.order_id, l.product_id,
       CAST((CASE WHEN _u(502, s) < 0.62 THEN 1
                  WHEN _u(502, s) < 0.84 THEN 2
                  WHEN _u(502, s) < 0.93 THEN 3
                  WHEN _u(502, s) < 0.97 THEN 4
                  ELSE 5 + floor(_u(503, s) * 6) END)
            * (CASE WHEN p.category_id IN (8, 9) THEN 1 + floor(_u(504, s) * 3) ELSE 1 END)
            + (CASE WHEN l.segment = 'Corporate' THEN floor(_u(505, s) * 3) ELSE 0 END)
            AS INTEGER) AS quantity,
       CAST(round(p.unit_price * (CASE year(l.order_date) WHEN 2022 THEN 0.94
                                                          WHEN 2023 THEN 0.97 ELSE 1.0 END), 2)
            AS DECIMAL(10, 2)) AS unit_price,
       CAST(least(0.40,
                  (CASE WHEN _u(506, s) < 0.68 THEN 0.00
                        WHEN _u(506, s) < 0.83 THEN 0.05
                        WHEN _u(506, s) < 0.92 THEN 0.10
                        WHEN _u(506, s) < 0.97 THEN 0.15
                        WHEN _u(506, s) < 0.99 THEN 0.20
                        ELSE 0.25 END)
                  + (CASE WHEN month(l.order_date) = 11 AND day(l.order_date) >= 22
                               AND _u(507, s) < 0.6 THEN 0.10 ELSE 0.00 END)
                  + (CASE WHEN l.segment = 'Corporate' AND _u(508, s) < 0.5 THEN 0.05 ELSE 0.00 END))
            AS DECIMAL(4, 2)) AS discount
FROM (
    SELECT *, order_id * 8 + line AS s,
           row_number() OVER (PARTITION BY order_id, product_id ORDER BY line) AS dup
    FROM _lines
) l
JOIN products p ON p.id = l.product_id
WHERE l.dup = 1
ORDER BY l.order_id, l.line;

-- ---------------------------------------------------------------------------------------------
COMMENT ON TABLE regions IS 'Sales regions of the world the chain operates in.';
COMMENT ON COLUMN regions.id IS 'Region identifier.';
COMMENT ON COLUMN regions.name IS 'Region name, e.g. Europe or Asia Pacific.';

COMMENT ON TABLE stores IS 'Physical shops. Every order is taken or fulfilled by one store.';
COMMENT ON COLUMN stores.id IS 'Store identifier.';
COMMENT ON COLUMN stores.name IS 'Store name: city plus neighbourhood or street.';
COMMENT ON COLUMN stores.city IS 'City the store is in.';
COMMENT ON COLUMN stores.region_id IS 'Region the store belongs to (regions.id).';
COMMENT ON COLUMN stores.opened_on IS 'Date the store opened.';

COMMENT ON TABLE categories IS 'Product categories (departments).';
COMMENT ON COLUMN categories.id IS 'Category identifier.';
COMMENT ON COLUMN categories.name IS 'Category name, e.g. Electronics or Books.';

COMMENT ON TABLE products IS 'Product catalogue with current list prices and unit costs.';
COMMENT ON COLUMN products.id IS 'Product identifier.';
COMMENT ON COLUMN products.name IS 'Product name: brand followed by item.';
COMMENT ON COLUMN products.category_id IS 'Category of the product (categories.id).';
COMMENT ON COLUMN products.unit_price IS 'Current list price of one unit.';
COMMENT ON COLUMN products.cost IS 'What one unit costs the chain to buy.';

COMMENT ON TABLE customers IS 'People and companies who buy from the chain.';
COMMENT ON COLUMN customers.id IS 'Customer identifier (assigned in signup order).';
COMMENT ON COLUMN customers.name IS 'Full name of the customer or contact person.';
COMMENT ON COLUMN customers.email IS 'Email address.';
COMMENT ON COLUMN customers.city IS 'City the customer lives in.';
COMMENT ON COLUMN customers.country IS 'Country the customer lives in.';
COMMENT ON COLUMN customers.region_id IS 'Region of the customer (regions.id).';
COMMENT ON COLUMN customers.segment IS 'Customer segment: Consumer, Small Business or Corporate.';
COMMENT ON COLUMN customers.signup_date IS 'Date the customer created an account.';

COMMENT ON TABLE orders IS 'Customer orders (one row per order), 2022-01-01 to 2024-12-31.';
COMMENT ON COLUMN orders.id IS 'Order number.';
COMMENT ON COLUMN orders.customer_id IS 'Customer who placed the order (customers.id).';
COMMENT ON COLUMN orders.store_id IS 'Store that took or fulfilled the order (stores.id).';
COMMENT ON COLUMN orders.order_date IS 'Date the order was placed.';
COMMENT ON COLUMN orders.status IS 'Order status: completed, shipped, cancelled or returned.';
COMMENT ON COLUMN orders.channel IS 'Sales channel: online, in-store or phone.';

COMMENT ON TABLE order_items IS 'Order lines: one product in one order, with quantity and price.';
COMMENT ON COLUMN order_items.id IS 'Order line identifier.';
COMMENT ON COLUMN order_items.order_id IS 'Order the line belongs to (orders.id).';
COMMENT ON COLUMN order_items.product_id IS 'Product sold (products.id).';
COMMENT ON COLUMN order_items.quantity IS 'Number of units.';
COMMENT ON COLUMN order_items.unit_price IS 'Price charged per unit before discount.';
COMMENT ON COLUMN order_items.discount IS 'Discount as a fraction of the price (0.10 = 10% off).';

-- ---------------------------------------------------------------------------------------------
DROP TABLE _items;
DROP TABLE _brands;
DROP TABLE _cities;
DROP TABLE _city_cum;
DROP TABLE _names;
DROP TABLE _cust;
DROP TABLE _days;
DROP TABLE _day_counts;
DROP TABLE _signed;
DROP TABLE _ord;
DROP TABLE _ord2;
DROP TABLE _store_rank;
DROP TABLE _open_region;
DROP TABLE _open_city;
DROP TABLE _lines;
DROP MACRO _u;
DROP MACRO _fin;
DROP MACRO _mix;
