-- The evaluations store: the current evaluation of every portfolio-day (the sink keeps it
-- equal to the dataflow's output), and the course's per-pair histories as views.
CREATE TABLE IF NOT EXISTS evaluations (
    investor       VARCHAR(16)    NOT NULL,
    portfolio      VARCHAR(16)    NOT NULL,
    as_of          DATE           NOT NULL,
    nav            DECIMAL(28, 6) NOT NULL,
    nav_change     DECIMAL(28, 6) NULL,
    nav_change_pct DECIMAL(20, 6) NULL,
    updated_at     TIMESTAMP(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (portfolio, as_of),
    KEY evaluations_by_investor (investor, portfolio, as_of)
) ENGINE = InnoDB;

CREATE OR REPLACE VIEW Inv1_P11 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv1' AND portfolio = 'P11';
CREATE OR REPLACE VIEW Inv1_P12 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv1' AND portfolio = 'P12';
CREATE OR REPLACE VIEW Inv2_P21 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv2' AND portfolio = 'P21';
CREATE OR REPLACE VIEW Inv2_P22 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv2' AND portfolio = 'P22';
CREATE OR REPLACE VIEW Inv3_P31 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv3' AND portfolio = 'P31';
CREATE OR REPLACE VIEW Inv3_P32 AS
    SELECT as_of AS `As Of`, nav AS `NAV per Share`, nav_change AS `Daily NAV Change`,
           nav_change_pct AS `Daily NAV Change %`
    FROM evaluations WHERE investor = 'Inv3' AND portfolio = 'P32';
