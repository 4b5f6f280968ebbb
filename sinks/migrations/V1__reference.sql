-- The course's reference tables (investorsDB.py).
CREATE TABLE IF NOT EXISTS Investors (
    Id   VARCHAR(16)  NOT NULL PRIMARY KEY,
    Name VARCHAR(100) NOT NULL,
    City VARCHAR(100) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS Portfolios (
    Id         VARCHAR(16)  NOT NULL PRIMARY KEY,
    Name       VARCHAR(100) NOT NULL,
    Cumulative BOOLEAN      NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS Investors_Portfolios (
    iid VARCHAR(16) NOT NULL,
    pid VARCHAR(16) NOT NULL,
    PRIMARY KEY (iid, pid),
    CONSTRAINT fk_ip_investor FOREIGN KEY (iid) REFERENCES Investors (Id),
    CONSTRAINT fk_ip_portfolio FOREIGN KEY (pid) REFERENCES Portfolios (Id)
) ENGINE = InnoDB;
