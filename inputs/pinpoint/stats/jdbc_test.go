package stats

import (
	"strings"
	"testing"
)

func TestStripCredentials(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		// Unchanged: nothing to strip.
		{"mysql plain", "jdbc:mysql://db1:3306/orders?useSSL=false&serverTimezone=UTC", "jdbc:mysql://db1:3306/orders?useSSL=false&serverTimezone=UTC"},
		{"oracle no credentials", "jdbc:oracle:thin:@ora1:1521:orcl", "jdbc:oracle:thin:@ora1:1521:orcl"},
		{"oracle tns no credentials", "jdbc:oracle:thin:@(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=ora1)(PORT=1521))(CONNECT_DATA=(SERVICE_NAME=orcl)))",
			"jdbc:oracle:thin:@(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=ora1)(PORT=1521))(CONNECT_DATA=(SERVICE_NAME=orcl)))"},
		{"h2 memory", "jdbc:h2:mem:test;DB_CLOSE_DELAY=-1", "jdbc:h2:mem:test;DB_CLOSE_DELAY=-1"},
		{"empty", "", ""},
		{"not credentials: userSSL, useUnicode", "jdbc:mysql://db1/orders?useUnicode=true&userSSL=1", "jdbc:mysql://db1/orders?useUnicode=true&userSSL=1"},

		// Userinfo in the authority.
		{"mysql userinfo", "jdbc:mysql://app:s3cret@db1:3306/orders", "jdbc:mysql://db1:3306/orders"},
		{"mysql user only", "jdbc:mysql://app@db1:3306/orders", "jdbc:mysql://db1:3306/orders"},
		{"mysql multi-host", "jdbc:mysql://app:s3cret@db1:3306,db2:3306/orders?failOverReadOnly=false", "jdbc:mysql://db1:3306,db2:3306/orders?failOverReadOnly=false"},
		{"password with @", "jdbc:postgresql://app:p@ss@pg1:5432/orders", "jdbc:postgresql://pg1:5432/orders"},
		{"password with /", "jdbc:mysql://app:pa/ss@db1/orders", "jdbc:mysql://db1/orders"},
		{"mariadb userinfo and params", "jdbc:mariadb://app:x@db1/orders?user=app&password=x&connectTimeout=5000", "jdbc:mariadb://db1/orders?connectTimeout=5000"},

		// Query parameters.
		{"postgresql params", "jdbc:postgresql://pg1:5432/orders?user=fred&password=secret&ssl=true", "jdbc:postgresql://pg1:5432/orders?ssl=true"},
		{"postgresql only secret params", "jdbc:postgresql://pg1/orders?user=fred&password=secret", "jdbc:postgresql://pg1/orders"},
		{"password first then others", "jdbc:postgresql://pg1/orders?password=secret&ssl=true&sslpassword=k", "jdbc:postgresql://pg1/orders?ssl=true"},
		{"value with =", "jdbc:postgresql://pg1/orders?password=a=b&ssl=true", "jdbc:postgresql://pg1/orders?ssl=true"},
		{"keystore passwords", "jdbc:mysql://db1/orders?trustCertificateKeyStorePassword=t&clientCertificateKeyStorePassword=c&sslMode=VERIFY_CA",
			"jdbc:mysql://db1/orders?sslMode=VERIFY_CA"},
		{"clickhouse", "jdbc:clickhouse://ch1:8123/default?user=default&password=x&compress=1", "jdbc:clickhouse://ch1:8123/default?compress=1"},

		// Oracle user/password@.
		{"oracle thin sid", "jdbc:oracle:thin:scott/tiger@ora1:1521:orcl", "jdbc:oracle:thin:@ora1:1521:orcl"},
		{"oracle thin service", "jdbc:oracle:thin:scott/tiger@//ora1:1521/orders.example.com", "jdbc:oracle:thin:@//ora1:1521/orders.example.com"},
		{"oracle thin tns", "jdbc:oracle:thin:scott/tiger@(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=ora1)(PORT=1521))(CONNECT_DATA=(SID=orcl)))",
			"jdbc:oracle:thin:@(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=ora1)(PORT=1521))(CONNECT_DATA=(SID=orcl)))"},
		{"oracle quoted password with @", `jdbc:oracle:thin:scott/"ti@ger"@ora1:1521:orcl`, "jdbc:oracle:thin:@ora1:1521:orcl"},
		{"oracle user only", "jdbc:oracle:thin:scott@ora1:1521:orcl", "jdbc:oracle:thin:@ora1:1521:orcl"},
		{"oracle oci", "jdbc:oracle:oci:scott/tiger@orcl_tns", "jdbc:oracle:oci:@orcl_tns"},

		// ';'-separated properties.
		{"sqlserver", "jdbc:sqlserver://mssql1:1433;databaseName=orders;user=sa;password=Secret1;encrypt=true", "jdbc:sqlserver://mssql1:1433;databaseName=orders;encrypt=true"},
		{"sqlserver credentials last", "jdbc:sqlserver://mssql1:1433;databaseName=orders;user=sa;password=Secret1", "jdbc:sqlserver://mssql1:1433;databaseName=orders"},
		{"sqlserver braced password with ;", "jdbc:sqlserver://mssql1;password={Se;cr=et};databaseName=orders", "jdbc:sqlserver://mssql1;databaseName=orders"},
		{"sqlserver userName", "jdbc:sqlserver://mssql1;userName=sa;integratedSecurity=false", "jdbc:sqlserver://mssql1;integratedSecurity=false"},
		{"jtds", "jdbc:jtds:sqlserver://mssql1:1433/orders;user=sa;password=x;instance=SQLEXPRESS", "jdbc:jtds:sqlserver://mssql1:1433/orders;instance=SQLEXPRESS"},
		{"db2", "jdbc:db2://db2host:50000/ORDERS:user=db2inst1;password=x;", "jdbc:db2://db2host:50000/ORDERS"},
		{"h2 upper case", "jdbc:h2:tcp://h2host/~/test;USER=sa;PASSWORD=x;MODE=MySQL", "jdbc:h2:tcp://h2host/~/test;MODE=MySQL"},
		{".NET style keys", "Server=mssql1;Database=orders;User ID=sa;Password=x;", "Server=mssql1;Database=orders"},
		{"pwd and uid", "jdbc:odbc:Driver={SQL Server};Server=mssql1;UID=sa;PWD=x", "jdbc:odbc:Driver={SQL Server};Server=mssql1"},
		{"quoted value", `jdbc:foo://h/db;password="a;b";x=1`, "jdbc:foo://h/db;x=1"},
		{"unterminated quote", `jdbc:foo://h/db;password="a;b`, "jdbc:foo://h/db"},

		// MySQL address syntax.
		{"mysql address", "jdbc:mysql://address=(host=db1)(port=3306)(user=app)(password=x)/orders", "jdbc:mysql://address=(host=db1)(port=3306)/orders"},
		{"mysql address credentials first", "jdbc:mysql://address=(user=app)(password=x)(host=db1)/orders", "jdbc:mysql://address=(host=db1)/orders"},

		// DSNs (Go drivers).
		{"go mysql dsn", "app:s3cret@tcp(db1:3306)/orders?parseTime=true", "tcp(db1:3306)/orders?parseTime=true"},
		{"postgres url", "postgres://app:s3cret@pg1:5432/orders?sslmode=disable", "postgres://pg1:5432/orders?sslmode=disable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stripCredentials(tc.url); got != tc.want {
				t.Errorf("stripCredentials(%q)\n got %q\nwant %q", tc.url, got, tc.want)
			}
		})
	}
}

// No secret from the table above may survive, whatever else the result looks like.
func TestStripCredentialsLeavesNoSecret(t *testing.T) {
	for _, url := range []string{
		"jdbc:mysql://app:s3cret@db1/orders?password=s3cret",
		"jdbc:oracle:thin:scott/s3cret@//ora1:1521/svc",
		"jdbc:sqlserver://mssql1;Password=s3cret;User=sa",
		"jdbc:postgresql://pg1/orders?PassWord=s3cret",
		"jdbc:mysql://address=(password=s3cret)(host=db1)/orders",
		"jdbc:snowflake://acct.snowflakecomputing.com/?token=s3cret&private_key_secret=s3cret",
		"app:s3cret@unix(/tmp/mysql.sock)/orders",
	} {
		if got := stripCredentials(url); strings.Contains(got, "s3cret") {
			t.Errorf("stripCredentials(%q) = %q still holds the secret", url, got)
		}
	}
}

// A URL without credentials must not cost an allocation per sample.
func TestStripCredentialsNoAllocWhenClean(t *testing.T) {
	url := "jdbc:mysql://db1:3306/orders?useSSL=false&serverTimezone=UTC&characterEncoding=utf8"
	if n := testing.AllocsPerRun(100, func() { _ = stripCredentials(url) }); n != 0 {
		t.Errorf("%v allocations for a clean URL, want 0", n)
	}
}
